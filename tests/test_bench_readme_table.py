"""bench/readme_table.py: the README's performance section comes from the benchmark JSON, and nothing
else in the README changes."""

import json

import pytest

from bench import readme_table


def result(name, value, met, **extra):
    data = {"name": name, "host": "llava_next", "device": "cpu: x86_64, 2 cores", "torch_threads": 1, "repeats": 3, "quick": False,
            "machine_busy": "no", "results": {}, "notes": [f"{name} note"],
            "targets": [{"what": f"{name} ratio", "value": value, "target": "<= 1.15x", "met": met, "unit": "x"}]}
    data.update(extra)
    return data


def latency():
    r = {"median_s": {"plain": 2.0, "tube": 2.1, "text_tube": 30.0}, "tube_over_plain": 1.05, "text_tube_over_tube": 14.3,
         "text_tube_over_tube_after_prefix": 250.0, "vision_tower_s": 9.5, "video_tokens": 13440, "queries": 64,
         "prompt_tokens_before_splice": 510}
    return result("tube_latency", 1.05, True, results={"64_frames": r})


def test_results_are_read_in_order_and_foreign_json_is_skipped(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(result("metrics", 3.2, False)))
    (tmp_path / "tube_latency.json").write_text(json.dumps(latency()))
    (tmp_path / "learning_check.json").write_text(json.dumps({"curve": [1, 2]}))  # another tool's file
    assert [d["name"] for d in readme_table.load_results(tmp_path)] == ["tube_latency", "metrics"]


def test_render_shows_every_target_met_or_not_and_the_latency_rows():
    text = readme_table.render([latency(), result("metrics", 3.2, False, machine_busy="yes: load 6")])
    assert "| tube_latency ratio | 1.05x | <= 1.15x | yes | llava_next |" in text
    assert "| metrics ratio | 3.2x | <= 1.15x | **no** |" in text and "| busy |" in text
    assert "| 64 | 14013 | 2 | 2.1 | 30 | 1.05 | 14.3 | 250 | 9.5 |" in text
    assert "- metrics: metrics note" in text


def test_scaling_rows_show_what_bounds_a_2_rank_ratio():
    stability = {"ratios": [1.7, 1.75, 1.65], "spread_pct": 6}
    ranks = result("synth_ranks", 1.7, False, config={"records": 480}, load_before=[0.5], results={
        "records_per_s": {"1": 40.0, "2": 68.0}, "ratio": 1.7, "stability": stability, "one_rank_cores": 1.04,
        "machine_parallel_ceiling": {"ceiling": 1.88}})
    served = result("analyzer", 15.3, True, config={"records": 96}, load_before=[2.0], results={
        "records_per_s": {"1": 4.9, "16": 75.0}, "ratio": 15.3, "stability": stability})
    rows = readme_table.scaling_table([ranks, served])
    assert rows[2] == "| synth_ranks | 480 | 1 vs 2 | 40 vs 68 | 1.7x | 1.7, 1.75, 1.65 (6%) | 1.04 | 1.88x | 0.50 |"
    assert rows[3].endswith("| 1.7, 1.75, 1.65 (6%) | - | - | 2.00 |")


def test_update_replaces_only_the_marked_section():
    readme = "# Title\n\nintro\n\n<!-- bench:start -->\nold table\n<!-- bench:end -->\n\n## After\nkept\n"
    out = readme_table.update_readme(readme, "new table")
    assert out == "# Title\n\nintro\n\n<!-- bench:start -->\nnew table\n<!-- bench:end -->\n\n## After\nkept\n"
    assert readme_table.update_readme(out, "new table") == out


def test_missing_markers_are_an_error():
    with pytest.raises(ValueError, match="bench:start"):
        readme_table.update_readme("# no section\n", "table")


def test_learning_check_table_in_percent():
    learning = {"date": "2026-11-22 05:01 UTC", "device": "cpu", "recipe": {"stages": [{"steps": 30}, {"steps": 90}]},
                "results": [{"variant": "full", "seconds": 57.4,
                             "metrics": {"m_tIoU": 0.644, "m_vIoU": 0.034, "vIoU@0.3": 0.0, "vIoU@0.5": 0.0, "n": 20}},
                            {"variant": "boxes_as_text", "seconds": 91.0,
                             "metrics": {"m_tIoU": 0.2, "m_vIoU": 0.0, "vIoU@0.3": 0.0, "vIoU@0.5": 0.0, "n": 20}}]}
    text = readme_table.render([latency()], learning)
    assert "120 optimizer steps per variant, 20 held-out" in text
    assert "| full | 64.4 | 3.4 | 0.0 | 0.0 | 57 |" in text
    assert "| boxes_as_text | 20.0 | 0.0 | 0.0 | 0.0 | 91 |" in text
    assert "Learning check" not in readme_table.render([latency()])
