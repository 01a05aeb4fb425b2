"""The lmms-eval plug-in end to end: the real `lmms-eval` command line finds the `llava_st` model through
the entry point, loads a tiny random checkpoint, and runs a local STVG task (eval/lmms_tasks, data from a
local JSONL, no downloads) and a local video-QA task beside it; plus the task hooks' scoring."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")

from llava_st.data.synthetic import SyntheticConfig, write_split  # noqa: E402
from llava_st.eval import metrics as M  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "eval" / "lmms_tasks"


def _task_hooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("llava_st_lmms_task_utils", TASKS / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic(cache_dir):
    root = cache_dir / "eval-synthetic-lmms"
    records = write_split(root, num=2, seed=7, config=SyntheticConfig(width=64, height=48, fps=2.0, num_frames=8, frames=4), split="test",
                          progress=False)
    return root, records


def test_entry_point_registers_llava_st():
    from lmms_eval.models import get_model

    from llava_st.eval.lmms_plugin import LlavaST

    assert get_model("llava_st") is LlavaST


def test_task_hooks_score_tubes_and_zero_unparsable(synthetic):
    hooks = _task_hooks()
    _, records = synthetic
    doc = records[0]
    exact = {"span": doc["span"], "status": "ok", "frames": [{"t": b["t"], "box_xyxy": b["xyxy"]} for b in doc["boxes"]]}
    assert hooks.stvg_process_results(doc, [json.dumps(exact)]) == {"m_tIoU": 1.0, "m_vIoU": 1.0, "vIoU@0.3": 1.0, "vIoU@0.5": 1.0}
    assert hooks.stvg_process_results(doc, ["not json"])["m_tIoU"] == 0.0
    assert hooks.stvg_process_results(doc, [json.dumps({**exact, "span": None, "status": "no time span found"})])["m_vIoU"] == 0.0
    shifted = {**exact, "span": [doc["span"][0] + 0.5, doc["span"][1] + 0.5]}
    vtg = hooks.vtg_process_results(doc, [json.dumps(shifted)])
    assert vtg["mIoU"] == pytest.approx(float(M.vtg_ious([shifted["span"]], [doc["span"]])[0]))
    box = doc["boxes"][0]["xyxy"]
    rec_doc = {**doc, "boxes": [{"t": 0.0, "xyxy": box}]}
    assert hooks.rec_process_results(rec_doc, [json.dumps({"status": "ok", "frames": [{"t": 0.0, "box_xyxy": box}]})])["Acc@0.5"] == 1.0
    assert hooks.rec_process_results(rec_doc, [""])["Acc@0.5"] == 0.0


QA_UTILS = '''
import os
def doc_to_visual(doc):
    return [os.path.join(os.environ["LLAVA_ST_DATA_ROOT"], doc["video"])]
def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]
def process_results(doc, results):
    return {"answered": float(isinstance(results[0], str) and len(results[0]) > 0)}
'''

QA_YAML = """task: mini_video_qa
dataset_path: json
dataset_kwargs:
  data_files:
    test: qa.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function qa_utils.doc_to_visual
doc_to_text: !function qa_utils.doc_to_text
doc_to_target: answer
process_results: !function qa_utils.process_results
generation_kwargs:
  max_new_tokens: 4
metric_list:
  - metric: answered
    aggregation: mean
    higher_is_better: true
"""


def test_lmms_eval_cli_runs_local_stvg_and_qa_tasks(tiny_st_checkpoint, synthetic, tmp_path):
    root, records = synthetic
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "stvg.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    # The 4-line form of a local split: include the shipped task, point it at a local file.
    (tasks / "mini_stvg.yaml").write_text(f"include: {TASKS / 'llava_st_stvg.yaml'}\ntask: mini_stvg\n"
                                          "dataset_kwargs:\n  data_files:\n    test: stvg.jsonl\n")
    (tasks / "qa.jsonl").write_text(json.dumps({"video": records[0]["video"], "question": "What moves?", "answer": "a shape"}) + "\n")
    (tasks / "qa_utils.py").write_text(QA_UTILS)
    (tasks / "mini_video_qa.yaml").write_text(QA_YAML)
    env = {
        **os.environ,
        "LLAVA_ST_DATA_ROOT": str(root),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable, "-m", "lmms_eval", "--model", "llava_st",
        "--model_args", f"pretrained={tiny_st_checkpoint},device=cpu,frames=4,max_new_tokens=4",
        "--include_path", str(tasks), "--tasks", "mini_stvg,mini_video_qa", "--batch_size", "1",
        "--output_path", str(tmp_path / "out"), "--log_samples",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    found = glob.glob(str(tmp_path / "out" / "**" / "*_results.json"), recursive=True)
    assert proc.returncode == 0 and found, proc.stdout[-3000:] + proc.stderr[-3000:]  # lmms-eval may exit 0 on errors

    results = json.loads(Path(found[0]).read_text())["results"]
    assert results["mini_video_qa"]["answered,none"] == 1.0
    samples_file = glob.glob(str(tmp_path / "out" / "**" / "*samples_mini_stvg.jsonl"), recursive=True)[0]
    samples = [json.loads(line) for line in Path(samples_file).read_text().splitlines()]
    assert len(samples) == 2
    viou = []
    for sample in samples:
        response = sample["filtered_resps"]
        tube = json.loads(response if isinstance(response, str) else response[0])  # the response is the predicted tube
        record = records[sample["doc_id"]]
        assert tube["query"] == record["caption"] and tube["video"]["path"].endswith(record["video"])
        assert "status" in tube and "raw_text" in tube
        viou.append(M.score_stvg(record, tube)["viou"])
    assert results["mini_stvg"]["m_vIoU,none"] == pytest.approx(sum(viou) / 2)


def test_frame_lists_become_a_video_for_answer(tmp_path):
    import numpy as np
    from PIL import Image

    from llava_st.data.video import read_video
    from llava_st.eval.lmms_plugin import FRAMES_FPS, _as_video

    frames = [Image.fromarray(np.full((48, 64, 3), 20 * k, np.uint8)) for k in range(6)]
    with _as_video(frames) as path:
        pixels, sample = read_video(path, frames_upbound=6, force_sample=True)
        assert pixels.shape[:3] == (6, 48, 64) and sample.fps == pytest.approx(FRAMES_FPS)
        assert pixels[5].mean() > pixels[1].mean() + 50
    assert not os.path.exists(path)  # the temporary video is removed
    video = str(tmp_path / "clip.mp4")
    with _as_video([video]) as same:
        assert same == video  # a video path passes through untouched
