"""bench.ablations: one quick fine-tune from the base (per-run JSON, resume, incomplete marking), the
summary's mean/std/spread rule on hand-made runs, and the boxes-as-text answer budget check."""

import json
import math

import pytest

from bench import ablations


def test_quick_run_writes_resumes_and_marks_incomplete(tmp_path):
    argv = ["--quick", "--variants", "boxes_as_text", "--seeds", "0", "--num-videos", "2", "--out", str(tmp_path)]
    assert ablations.main(argv) == 0
    path = tmp_path / "ablations" / "boxes_as_text-seed0.json"
    row = json.loads(path.read_text())
    assert row["steps"] == ablations.QUICK_STEPS and row["st"]["st_query_mode"] == "none"
    assert all(math.isfinite(row["metrics"][k]) for k in ablations.METRICS)
    assert row["longest_text_answer_tokens"] > 0
    mtime = path.stat().st_mtime_ns
    assert ablations.main(argv) == 0
    assert path.stat().st_mtime_ns == mtime
    summary = json.loads((tmp_path / "ablations.json").read_text())
    v = summary["variants"]["boxes_as_text"]
    assert v["num_seeds"] == 1 and v["complete"] is False
    assert "(incomplete)" in "\n".join(ablations.table(summary))
    assert len(row["box_iou_by_frame"]["mean_iou"]) == row["frames"] == len(v["box_iou_by_frame"])


def _run(folder, variant, seed, m_viou):
    metrics = {k: 0.5 for k in ablations.METRICS}
    metrics["m_vIoU"] = m_viou
    row = {"variant": variant, "seed": seed, "steps": 10, "num_videos": 100, "train_seconds": 60.0 + seed, "metrics": metrics}
    (folder / f"{variant}-seed{seed}.json").write_text(json.dumps(row))


def test_summary_mean_std_and_spread(tmp_path):
    for seed, (f, a, b) in enumerate([(0.50, 0.30, 0.49), (0.52, 0.32, 0.53), (0.54, 0.34, 0.51)]):
        _run(tmp_path, "full", seed, f)
        _run(tmp_path, "queries_after", seed, a)
        _run(tmp_path, "paper_decoder", seed, b)
    s = ablations.summarise(tmp_path)["variants"]
    assert s["full"]["complete"] and s["full"]["num_seeds"] == 3
    assert s["full"]["stats"]["m_vIoU"]["mean"] == pytest.approx(0.52)
    assert s["full"]["stats"]["m_vIoU"]["std"] == pytest.approx(0.02)
    assert s["queries_after"]["vs_full"]["m_vIoU"]["difference"] == pytest.approx(-0.20)
    assert s["queries_after"]["vs_full"]["m_vIoU"]["beyond_spread"] is True
    assert s["paper_decoder"]["vs_full"]["m_vIoU"]["beyond_spread"] is False
    assert s["paper_decoder"]["vs_full"]["m_tIoU"]["beyond_spread"] is False


class _Tok:
    def __call__(self, text):
        return type("Enc", (), {"input_ids": list(range(len(text.split())))})()


class _Grounder:
    def __init__(self, budget):
        self.processor = type("P", (), {"tokenizer": _Tok()})()
        self.budget = budget

    def answer_budget(self, times):
        return self.budget


def test_answer_budget_check_fails_loudly_when_too_small():
    from llava_st.data.synthetic import make_stvg
    from llava_st.recipes.synthetic_stg import VIDEOS

    records = [make_stvg(i, 2024, VIDEOS, "heldout")[1] for i in range(3)]
    assert ablations.check_answer_budget(_Grounder(10_000), records, 8) > 0
    with pytest.raises(AssertionError, match="exceeds the answer budget 4"):
        ablations.check_answer_budget(_Grounder(4), records, 8)


def test_box_iou_by_frame_counts_only_frames_inside_both_spans():
    # An 8 s clip at 1 fps; the target in frames 2..5; the tube predicts frames 3..6.
    record = {"id": "a", "duration": 8.0, "fps": 1.0,
              "boxes": [{"t": float(t), "xyxy": [0.0, 0.0, 10.0, 10.0]} for t in range(2, 6)]}
    tube = {"id": "a", "frames": [{"t": 3.0, "box_xyxy": [0.0, 0.0, 10.0, 10.0]},  # exact
                                  {"t": 4.0, "box_xyxy": [0.0, 0.0, 10.0, 5.0]},  # half
                                  {"t": 5.0, "box_xyxy": [20.0, 20.0, 30.0, 30.0]},  # disjoint
                                  {"t": 6.0, "box_xyxy": [0.0, 0.0, 10.0, 10.0]}]}  # outside the true span
    by = ablations.box_iou_by_frame([record], [tube], 8)
    assert by["frames"] == [0, 0, 0, 1, 1, 1, 0, 0]
    assert by["mean_iou"][3:6] == [pytest.approx(1.0), pytest.approx(0.5), pytest.approx(0.0)]
    assert by["mean_iou"][:3] == [None] * 3 and by["mean_iou"][6:] == [None] * 2
    # 4 sampled frames of the same clip (frames 0, 2, 4, 7, as data.video.sample_frames takes them): 4 s is index 2.
    four = ablations.box_iou_by_frame([record], [{"id": "a", "frames": [{"t": 4.0, "box_xyxy": [0.0, 0.0, 10.0, 5.0]}]}], 4)
    assert four["frames"] == [0, 0, 1, 0] and four["mean_iou"][2] == pytest.approx(0.5)
