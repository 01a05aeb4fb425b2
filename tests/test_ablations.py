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
    assert set(ablations.HITS) | {"frames"} == set(row["box_object_hits"])


def _run(folder, variant, seed, m_viou):
    metrics = {k: 0.5 for k in ablations.METRICS}
    metrics["m_vIoU"] = m_viou
    row = {"variant": variant, "seed": seed, "steps": 10, "num_videos": 100, "train_seconds": 60.0 + seed, "metrics": metrics}
    (folder / f"{variant}-seed{seed}.json").write_text(json.dumps(row))


def test_summary_averages_object_hits_over_the_seeds_that_have_them(tmp_path):
    for seed in range(3):
        _run(tmp_path, "full", seed, 0.5)
    for seed, target in [(1, 0.6), (2, 0.8)]:
        path = tmp_path / f"full-seed{seed}.json"
        row = json.loads(path.read_text())
        row["box_object_hits"] = {"target": target, "distractor": 0.9 - target, "neither": 0.1, "frames": 10}
        path.write_text(json.dumps(row))
    summary = ablations.summarise(tmp_path)
    hits = summary["variants"]["full"]["box_object_hits"]
    assert hits["seeds"] == [1, 2] and hits["target"] == pytest.approx(0.7) and hits["distractor"] == pytest.approx(0.2)
    assert ablations.hits_table(summary)[-1] == "| full | 1,2 | 70.0 | 20.0 | 10.0 |"


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


def test_box_object_hits_tells_target_from_distractor():
    from llava_st.data.synthetic import box_at, make_stvg
    from llava_st.recipes.synthetic_stg import VIDEOS

    _, record, scene = make_stvg(0, 2024, VIDEOS, "heldout")
    target, distractor = scene[0], scene[1]
    first = target.first
    frames = [{"t": float(first), "box_xyxy": box_at(target, first, VIDEOS)},  # on the target
              {"t": float(first + 1), "box_xyxy": box_at(distractor, first + 1, VIDEOS)},  # on a distractor
              {"t": float(first + 2), "box_xyxy": [-20.0, -20.0, -10.0, -10.0]},  # on neither (off the frame)
              {"t": float(target.last + 1), "box_xyxy": box_at(target, target.last, VIDEOS)}]  # outside the true span: not counted
    hits = ablations.box_object_hits([record], [{"id": record["id"], "frames": frames}], 2024, VIDEOS)
    assert target.last - target.first >= 2 and hits["frames"] == 3
    assert hits["target"] == hits["distractor"] == hits["neither"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("mode", ["interleave", "after"])
def test_boxes_see_the_description_only_through_dual_cross_attention(qwen_tokenizer, moving_box_video, tmp_path, mode):
    """The prompt puts the description after the video, so under causal attention no query state sees it:
    without dual cross attention two descriptions of one clip get the same boxes (the training-time
    forward); with it they differ. What the README's ablation notes rest on."""
    import shutil

    import torch

    from llava_st.core.config import STConfig
    from llava_st.hosts.hf.data import STCollator, STDataset
    from llava_st.testing.hf import build_tiny_st

    path, boxes = moving_box_video
    shutil.copy(path, tmp_path / "box.mp4")
    record = {"id": "v", "task": "stvg", "video": "box.mp4", "span": [1.0, 2.9],
              "boxes": [{"t": t / 10, "xyxy": boxes[t].tolist()} for t in range(10, 30)],
              "width": 96, "height": 64, "duration": 4.0, "fps": 10.0}
    captions = ["the red box", "the small blue circle on the left moving up"]
    pred = {}
    for dual in (False, True):
        model, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8, query_mode=mode, dual_cross_attention=dual), seed=1)
        items = STDataset([dict(record, id=f"v{k}", caption=c) for k, c in enumerate(captions)], tmp_path, proc, frames=4)
        collate = STCollator(proc.tokenizer.pad_token_id)
        with torch.no_grad():
            pred[dual] = [model.eval()(**collate([items[k]])).pred_boxes[0] for k in range(len(captions))]
    torch.testing.assert_close(pred[False][0], pred[False][1], atol=1e-5, rtol=0)
    assert (pred[True][0] - pred[True][1]).abs().max() > 1e-3


def test_readme_section_names_missing_variants_and_shows_object_hits(tmp_path):
    from bench import readme_table

    runs = tmp_path / "ablations"
    runs.mkdir()
    for seed in range(3):
        _run(runs, "full", seed, 0.5)
    _run(runs, "queries_after", 0, 0.4)
    row = json.loads((runs / "full-seed0.json").read_text())
    row["box_object_hits"] = {"target": 0.5, "distractor": 0.25, "neither": 0.25, "frames": 8}
    (runs / "full-seed0.json").write_text(json.dumps(row))
    (tmp_path / "ablations.json").write_text(json.dumps(ablations.summarise(runs)))
    section = readme_table.ablations_section(tmp_path)
    assert "not run yet: paper_decoder, boxes_as_text, no_dual_attn, frames4_queries4." in section
    assert "| queries_after | 1 (incomplete) |" in section
    assert "| full | 0 | 50.0 | 25.0 | 25.0 |" in section


def test_reruns_stay_out_of_the_means_give_hits_and_compare_with_the_first_run(tmp_path):
    for seed in range(3):
        _run(tmp_path, "full", seed, 0.5 + 0.01 * seed)
    (tmp_path / "reruns").mkdir()
    _run(tmp_path / "reruns", "full", 1, 0.30)
    row = json.loads((tmp_path / "reruns" / "full-seed1.json").read_text())
    row.update(rerun=True, box_object_hits={"target": 0.75, "distractor": 0.125, "neither": 0.125, "frames": 8})
    (tmp_path / "reruns" / "full-seed1.json").write_text(json.dumps(row))
    summary = ablations.summarise(tmp_path)
    full = summary["variants"]["full"]
    assert full["num_seeds"] == 3 and full["stats"]["m_vIoU"]["mean"] == pytest.approx(0.51)
    assert full["box_object_hits"]["reruns"] is True and full["box_object_hits"]["target"] == pytest.approx(0.75)
    assert ablations.hits_table(summary)[-1] == "| full | 1 (rerun) | 75.0 | 12.5 | 12.5 |"
    assert ablations.rerun_table(summary)[-1].startswith("| full | 1 | 50.0 / 50.0 | 51.0 / 30.0 |")


def test_readme_section_says_when_the_table_is_complete(tmp_path):
    from bench import readme_table

    runs = tmp_path / "ablations"
    runs.mkdir()
    for name in ablations.VARIANTS:
        for seed in range(ablations.COMPLETE_SEEDS):
            _run(runs, name, seed, 0.5)
    (tmp_path / "ablations.json").write_text(json.dumps(ablations.summarise(runs)))
    section = readme_table.ablations_section(tmp_path)
    assert "Every variant has at least 3 seeds." in section and "Partial" not in section and "not run yet" not in section
