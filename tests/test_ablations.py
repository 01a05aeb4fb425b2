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
