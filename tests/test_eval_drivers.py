"""Eval drivers on converted fixture data (synthetic Uni-STG videos/images, real mp4/png files) with a real
predictor that implements the Grounder interface from ground truth: sharding, incremental JSONL, resume
after a kill giving identical metrics, unparsable answers and unreadable files counted and scored 0."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llava_st.core.timespan import format_span, parse_span
from llava_st.core.tube import assemble_tube
from llava_st.data.synthetic import SyntheticConfig, write_split
from llava_st.data.targets import frame_targets, image_targets
from llava_st.data.templates import REC_ANSWER
from llava_st.data.video import read_video
from llava_st.eval import drivers as D
from llava_st.eval import metrics as M

ROOT = Path(__file__).resolve().parents[1]
CONFIG = SyntheticConfig(width=64, height=48, fps=4.0, num_frames=16, frames=8)


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so the driver does not catch it."""


class NoisyOracle:
    """A Grounder (llava_st.api interface) that answers from the ground truth of `records`: spans moved by
    `shift` seconds, boxes by `box_shift` normalised x; ids in `unparsable` answer without a span.
    Videos are really decoded (core frame sampling) and tubes really assembled (core.tube)."""

    def __init__(self, records, shift=0.0, box_shift=0.0, unparsable=(), frames=8, kill_after=None):
        self.by_key = {(Path(r.get("video") or r["image"]).name, r["caption"]): r for r in records}
        self.shift, self.box_shift, self.unparsable, self.frames = shift, box_shift, set(unparsable), frames
        self.kill_after, self.calls, self.queries = kill_after, 0, []

    def _tick(self, descriptions):
        if self.kill_after is not None and self.calls >= self.kill_after:
            raise Killed()
        self.calls += 1
        self.queries += list(descriptions)

    def _video(self, path, r):
        return {"path": str(path), "width": r["width"], "height": r["height"], "duration": r.get("duration", 0.0), "fps": r.get("fps", 0.0)}

    def ground(self, video_path, descriptions, frames=None):
        self._tick(descriptions)
        _, sample = read_video(video_path, frames_upbound=frames or self.frames, force_sample=True)
        tubes = []
        for d in descriptions:
            r = self.by_key[(Path(video_path).name, d)]
            s, e = r["span"][0] + self.shift, r["span"][1] + self.shift
            raw = "I am not sure." if r["id"] in self.unparsable else format_span(max(s, 0.0), max(e, 0.0))
            boxes = frame_targets(r, sample.times, max_gap=10.0).boxes_cxcywh.clone() if r.get("boxes") else None
            if boxes is not None:
                boxes[:, 0] = (boxes[:, 0] + self.box_shift).clamp(0, 1)
            tubes.append(assemble_tube(d, raw, sample.times.tolist(), boxes, self._video(video_path, r)))
        return tubes

    def ground_image(self, image_path, descriptions):
        self._tick(descriptions)
        if not Path(image_path).is_file():
            raise FileNotFoundError(f"image not found: {image_path}")
        out = []
        for d in descriptions:
            r = self.by_key[(Path(image_path).name, d)]
            boxes = image_targets(r).boxes_cxcywh.clone()
            boxes[:, 0] = (boxes[:, 0] + self.box_shift).clamp(0, 1)
            out.append(assemble_tube(d, REC_ANSWER, [0.0], boxes, self._video(image_path, r), span=(0.0, 0.0)))
        return out


@pytest.fixture(scope="module")
def stvg_data(cache_dir):
    root = cache_dir / "eval-synthetic"
    records = write_split(root, num=6, seed=3, config=CONFIG, split="test", task="stvg", progress=False)
    path = root / "test.json"
    return root, path, records


@pytest.fixture(scope="module")
def rec_data(cache_dir):
    root = cache_dir / "eval-synthetic-rec"
    records = write_split(root, num=4, seed=5, config=CONFIG, split="val", task="rec", progress=False)
    return root, root / "val.json", records


def _read_metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())


def test_stvg_oracle_scores_perfect_and_unparsable_counts_zero(stvg_data, tmp_path):
    root, path, records = stvg_data
    bad = records[1]["id"]
    oracle = NoisyOracle(records, unparsable=[bad], frames=16)
    result = D.evaluate(oracle, D.BENCHMARKS["hcstvg-v1"], {"test": path}, root, tmp_path, progress=False, convention=M.HCSTVG_OFFICIAL)
    allm = result["splits"]["test"]["all"]
    # Every frame sampled and exact; the answer's 0.1 s resolution leaves an end frame or two held.
    assert allm["m_tIoU"] == pytest.approx(5 / 6)
    assert 0.9 * 5 / 6 < allm["m_vIoU"] <= 5 / 6
    assert result["counts"] == {"samples": 6, "missing": 0, "unparsable": 1, "errors": 0}
    rows = [json.loads(line) for line in (tmp_path / "predictions.rank0-of-1.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    assert next(r for r in rows if r["id"] == bad)["status"].startswith("no time span")
    table = (tmp_path / "table.md").read_text()
    assert "| m_tIoU | m_vIoU | vIoU@0.3 | vIoU@0.5 |" in table and "| llava_st | 83.3 |" in table
    assert "1 unparsable" in table and "hcstvg-official: every frame" in table and "reproduces tzhhhh123/HC-STVG eval_hcvg.py" in table


def test_vidstg_reports_per_sentence_type(stvg_data, tmp_path):
    root, path, records = stvg_data
    result = D.evaluate(NoisyOracle(records, shift=0.5), D.BENCHMARKS["vidstg"], {"test": path}, root, tmp_path, progress=False)
    groups = result["splits"]["test"]
    types = {r["sentence_type"] for r in records}
    assert set(groups) == {"all"} | types
    assert sum(groups[t]["n"] for t in types) == groups["all"]["n"] == len(records)
    assert result["convention"].startswith("tubedetr")
    table = (tmp_path / "table.md").read_text()
    assert "Declarative m_tIoU" in table and "Interrogative vIoU@0.5" in table


def test_resume_after_kill_gives_identical_metrics(stvg_data, tmp_path):
    root, path, records = stvg_data
    bench = D.BENCHMARKS["hcstvg-v1"]
    kw = dict(shift=0.7, box_shift=0.05, unparsable=[records[4]["id"]])
    D.evaluate(NoisyOracle(records, **kw), bench, {"test": path}, root, tmp_path / "full", progress=False)

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        D.evaluate(NoisyOracle(records, kill_after=3, **kw), bench, {"test": path}, root, out, progress=False)
    preds = out / "predictions.rank0-of-1.jsonl"
    assert len(preds.read_text().splitlines()) == 3 and not (out / "metrics.json").exists()
    with open(preds, "a") as f:  # a crash in the middle of writing a line
        f.write('{"id": "' + records[3]["id"] + '", "split": "te')
    resumed = NoisyOracle(records, **kw)
    D.evaluate(resumed, bench, {"test": path}, root, out, progress=False)
    assert resumed.queries == [r["caption"] for r in records[3:]]  # nothing predicted twice
    assert _read_metrics(out) == _read_metrics(tmp_path / "full")
    assert 0 < _read_metrics(out)["splits"]["test"]["all"]["m_vIoU"] < 1


def test_shards_merge_to_the_single_process_metrics(stvg_data, tmp_path):
    root, path, records = stvg_data
    bench = D.BENCHMARKS["charades-sta"]
    vtg_path = tmp_path / "vtg.jsonl"
    vtg_path.write_text("".join(json.dumps({**r, "task": "vtg", "boxes": []}) + "\n" for r in records))
    kw = dict(shift=0.6, unparsable=[records[0]["id"]])
    single = D.evaluate(NoisyOracle(records, **kw), bench, {"test": vtg_path}, root, tmp_path / "one", progress=False)
    out = tmp_path / "sharded"
    for rank in (0, 1):
        assert D.evaluate(NoisyOracle(records, **kw), bench, {"test": vtg_path}, root, out, rank=rank, world_size=2, progress=False) is None
    samples = [("test", r) for r in D.load_records(vtg_path)]
    merged = D.finish(bench, samples, root, out)
    assert merged == single
    answered = [parse_span(format_span(r["span"][0] + 0.6, r["span"][1] + 0.6), r["duration"]).span for r in records[1:]]
    expected = M.vtg_ious([None] + answered, [r["span"] for r in records])
    assert single["splits"]["test"]["all"]["mIoU"] == pytest.approx(float(expected.mean()), abs=1e-4)
    assert "| R@1,IoU=0.3 | R@1,IoU=0.5 | R@1,IoU=0.7 | mIoU |" in (out / "table.md").read_text()


def test_torchrun_shards_and_rank0_merges(stvg_data, tmp_path):
    root, path, records = stvg_data
    script = tmp_path / "run_eval.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_eval_drivers import NoisyOracle\n"
        "from llava_st.eval import drivers as D\n"
        "from llava_st.eval.cli import _init_distributed\n"
        "import torch.distributed as dist\n"
        "records = D.load_records(sys.argv[1])\n"
        "_init_distributed(2)\n"
        "D.evaluate(NoisyOracle(records, shift=0.3), D.BENCHMARKS['hcstvg-v2'], {'val': sys.argv[1]},\n"
        "           sys.argv[2], sys.argv[3], progress=False)\n"
        "dist.destroy_process_group()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29571"]
    cmd += [str(script), str(path), str(root), str(tmp_path / "out")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "out").glob("predictions.*.jsonl"))
    assert files == ["predictions.rank0-of-2.jsonl", "predictions.rank1-of-2.jsonl"]
    single = D.evaluate(NoisyOracle(records, shift=0.3), D.BENCHMARKS["hcstvg-v2"], {"val": path}, root, tmp_path / "one", progress=False)
    assert _read_metrics(tmp_path / "out") == single


def test_rec_splits_missing_image_counted_as_error(rec_data, tmp_path):
    root, path, records = rec_data
    broken = tmp_path / "testA.json"
    moved = [{**r, "id": r["id"] + "-A"} for r in records]
    moved[2]["image"] = "images/does-not-exist.png"
    broken.write_text(json.dumps(moved))
    oracle = NoisyOracle(records + moved, box_shift=0.02)
    result = D.evaluate(oracle, D.BENCHMARKS["refcoco"], {"val": path, "testA": broken}, root, tmp_path / "out", progress=False)
    assert result["splits"]["val"]["all"]["Acc@0.5"] == 1.0
    assert result["splits"]["testA"]["all"]["Acc@0.5"] == pytest.approx(3 / 4)
    assert result["counts"]["errors"] == 1
    row = D.merge_predictions(tmp_path / "out")[moved[2]["id"]]
    assert row["status"].startswith("error: FileNotFoundError") and "does-not-exist" in row["status"]
    assert "| Model | val | testA |" in (tmp_path / "out" / "table.md").read_text()


def test_bad_record_is_named_and_loses_nothing_else(stvg_data, tmp_path):
    root, path, records = stvg_data
    broken = [dict(r) for r in records[:3]]
    del broken[1]["span"]
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in broken))
    result = D.evaluate(NoisyOracle(records), D.BENCHMARKS["hcstvg-v1"], {"test": data}, root, tmp_path / "out", progress=False,
                        convention=M.HCSTVG_OFFICIAL)
    row = D.merge_predictions(tmp_path / "out")[broken[1]["id"]]
    assert row["status"] == f"bad record: id={broken[1]['id']} field=span: missing"
    assert result["counts"]["errors"] == 1
    assert result["splits"]["test"]["all"]["m_tIoU"] == pytest.approx(2 / 3)


def test_eval_cli_merge_only_and_viz(stvg_data, tmp_path):
    from llava_st.cli import main

    root, path, records = stvg_data
    out = tmp_path / "out"
    D.predict(NoisyOracle(records, shift=0.25), [("test", r) for r in records], "stvg", root, out, progress=False)
    code = main(["eval", "stvg", "--benchmark", "hcstvg-v1", "--data", f"test={path}", "--data-root", str(root), "--out", str(out)]
                + ["--merge-only", "--viz", "2", "--convention", "stcat"])
    assert code == 0
    assert _read_metrics(out)["convention"].startswith("stcat")
    drawn = sorted(p.name for p in (out / "viz").iterdir())
    assert drawn == sorted(f"{r['id']}{suffix}" for r in records[:2] for suffix in (".mp4", ".iou.png"))


def test_didemo_benchmark_scores_best_three_annotators():
    annotators = [[5.0, 25.0], [5.0, 25.0], [0.0, 5.0], [5.0, 25.0]]  # chunks (1,4) (1,4) (0,0) (1,4): 3 agree
    records = [
        {"id": i, "task": "vtg", "video": "v.mp4", "caption": "c", "span": [5.0, 25.0], "duration": 30.0, "annotator_spans": annotators}
        for i in ("a", "b")
    ]
    rows = {
        "a": {"id": "a", "status": "ok", "tube": {"span": [5.0, 25.0], "status": "ok", "frames": []}},
        "b": {"id": "b", "status": "no time span found", "tube": {"span": None, "status": "no time span found"}},
    }
    bench = D.BENCHMARKS["didemo"]
    result = D.score(bench, [("test", r) for r in records], rows)
    metrics = result["splits"]["test"]["all"]
    assert metrics["R@1"] == 0.5 and metrics["mIoU"] == pytest.approx(0.5)
    assert result["counts"]["unparsable"] == 1
    # Two of four annotators agreeing is no hit under the official rule (the mean of the best 3 ranks is > 1).
    two = [{**r, "annotator_spans": annotators[:3] + [[5.0, 20.0]]} for r in records]
    assert D.score(bench, [("test", r) for r in two], rows)["splits"]["test"]["all"]["R@1"] == 0.0
    assert "| Model | R@1 | mIoU |" in D.markdown_table(bench, result)


def test_eval_cli_refuses_a_benchmark_of_another_task_and_a_missing_checkpoint(tmp_path):
    from llava_st.cli import main

    with pytest.raises(SystemExit, match="is a vtg benchmark"):
        main(["eval", "stvg", "--benchmark", "charades-sta", "--data", "x.jsonl", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--checkpoint is required"):
        main(["eval", "stvg", "--data", "x.jsonl", "--out", str(tmp_path)])


def _jail(stvg_data, tmp_path):
    """A fresh data root holding copies of the fixture videos, and a directory outside it."""
    import shutil

    root, path, records = stvg_data
    jail, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    for r in records:
        (jail / r["video"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / r["video"], jail / r["video"])
        shutil.copy(root / r["video"], outside / Path(r["video"]).name)
    return jail, outside, records


def test_bad_ground_truth_lines_and_paths_are_rejected_per_record_and_the_run_goes_on(stvg_data, tmp_path):
    jail, outside, records = _jail(stvg_data, tmp_path)
    good = [records[0], records[5]]
    name = Path(records[2]["video"]).name
    (jail / "escape.mp4").symlink_to(outside / name)
    (jail / "alias.mp4").symlink_to(jail / records[3]["video"])  # a link inside the root is fine
    boxes = [dict(b) for b in records[1]["boxes"]]
    boxes[0]["xyxy"] = [str(v) for v in boxes[0]["xyxy"]]
    bad = {
        records[1]["id"]: ({**records[1], "boxes": boxes}, "field=boxes[0].xyxy:"),
        records[2]["id"]: ({**records[2], "span": "abc"}, "field=span:"),
        records[4]["id"]: ({**records[4], "video": "escape.mp4"}, "field=video:"),
        "dotdot": ({**records[4], "id": "dotdot", "video": f"../outside/{name}"}, "field=video:"),
        "abs": ({**records[4], "id": "abs", "video": str(outside / name)}, "field=video:"),
        "qa": ({**records[4], "id": "qa", "task": "qa"}, "field=task:"),
        "type": ({**records[4], "id": "type", "sentence_type": ["x"], "fps": "30"}, "field=fps:"),
    }
    lines = [json.dumps(good[0]), "{not json", json.dumps({**records[4], "id": None}), "[1, 2]"]
    lines += [json.dumps(r) for r, _ in bad.values()] + [json.dumps({**records[3], "video": "alias.mp4"}), json.dumps(good[1])]
    data = tmp_path / "test.jsonl"
    data.write_text("\n".join(lines) + "\n")
    oracle = NoisyOracle(records)
    out = tmp_path / "out"
    result = D.evaluate(oracle, D.BENCHMARKS["vidstg"], {"test": data}, jail, out, progress=False)
    n = len(lines)
    assert result["counts"] == {"samples": n, "missing": 0, "unparsable": 0, "errors": n - 3}
    assert _read_metrics(out) == result and (out / "table.md").exists()
    assert sorted(oracle.queries) == sorted([good[0]["caption"], good[1]["caption"], records[3]["caption"]])  # nothing else read
    rows = D.merge_predictions(out)
    assert len(rows) == n  # every entry of the file is accounted for
    for rid, (_, field) in bad.items():
        assert rows[rid]["status"].startswith(f"bad record: id={rid} {field}"), rows[rid]["status"]
    for line, words in [(2, "invalid JSON"), (3, "field=id"), (4, "must be a JSON object")]:
        status = rows[f"test.jsonl:line {line}"]["status"]
        assert status.startswith(f"bad record: {data}: line {line}: ") and words in status
    assert "through a link" in rows[records[4]["id"]]["status"] and "relative" in rows["abs"]["status"]
    assert result["splits"]["test"]["all"]["n"] == n
    assert result["splits"]["test"]["all"]["m_tIoU"] == pytest.approx(3 / n, abs=0.02)  # the three good ones, near 1 each
    # Scoring the same samples with no predictions at all still scores the bad content 0, as errors (the
    # link escape is a matter of the data root, which scoring does not read: that sample is just missing).
    samples = [("test", r) for r in D.load_records(data)]
    empty = D.score(D.BENCHMARKS["vidstg"], samples, {})
    assert empty["counts"] == {"samples": n, "missing": 4, "unparsable": 0, "errors": n - 4}
    assert D.score(D.BENCHMARKS["vidstg"], samples, rows) == result


def test_resume_ignores_malformed_prediction_rows(stvg_data, tmp_path, caplog):
    root, path, records = stvg_data
    bench = D.BENCHMARKS["hcstvg-v1"]
    full = D.evaluate(NoisyOracle(records, shift=0.3), bench, {"test": path}, root, tmp_path / "full", progress=False)
    out = tmp_path / "resumed"
    out.mkdir()
    rows = [json.loads(line) for line in (tmp_path / "full" / "predictions.rank0-of-1.jsonl").read_text().splitlines()]
    broken = [
        {k: v for k, v in rows[0].items() if k != "id"},  # no id
        {k: v for k, v in rows[1].items() if k != "status"},  # no status
        {**rows[2], "tube": "a string"},
        {**rows[3], "tube": {**rows[3]["tube"], "span": ["a", "b"]}},
        {**rows[4], "tube": {**rows[4]["tube"], "frames": [{"t": 1.0, "box_xyxy": [1, 2]}]}},
        [1, 2, 3],
    ]
    lines = [json.dumps(r) for r in broken] + ["{not json", json.dumps(rows[5])]
    (out / "predictions.rank0-of-1.jsonl").write_text("\n".join(lines) + "\n")
    resumed = NoisyOracle(records, shift=0.3)
    with caplog.at_level("WARNING"):
        D.evaluate(resumed, bench, {"test": path}, root, out, progress=False)
    assert resumed.queries == [r["caption"] for r in records[:5]]  # the malformed rows are predicted again
    assert _read_metrics(out) == full
    warned = [r.getMessage() for r in caplog.records if "ignored prediction row" in r.getMessage()]
    assert len(warned) == 7 and any("field=status" in m for m in warned) and any("line 7" in m for m in warned)


def test_eval_cli_unreadable_test_file_is_one_error_line(tmp_path, capsys):
    from llava_st.cli import main

    code = main(["eval", "stvg", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o"), "--merge-only"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"llava-st eval: error: {tmp_path / 'missing.jsonl'}: file not found"]
