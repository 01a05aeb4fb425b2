"""`llava-st eval` end to end with a real tiny checkpoint loaded through llava_st.api.load_grounder, on
converted (synthetic Uni-STG) STVG, VTG and REC files: predictions written, a rerun resumes with nothing
left to predict and identical metrics, a random model's unparsable answers counted and scored 0."""

import json

import pytest

from llava_st.cli import main
from llava_st.data.synthetic import SyntheticConfig, write_split
from llava_st.eval import drivers as D

CONFIG = SyntheticConfig(width=64, height=48, fps=2.0, num_frames=8, frames=4)


@pytest.fixture(scope="module")
def data(cache_dir):
    root = cache_dir / "eval-synthetic-ckpt"
    stvg = write_split(root, num=2, seed=11, config=CONFIG, split="test", progress=False)
    rec = write_split(root, num=2, seed=11, config=CONFIG, split="val", task="rec", progress=False)
    return root, stvg, rec


def _rows(out):
    return [json.loads(line) for line in (out / "predictions.rank0-of-1.jsonl").read_text().splitlines()]


def test_eval_stvg_with_a_tiny_checkpoint_resumes_identically(tiny_st_checkpoint, data, tmp_path):
    root, records, _ = data
    out = tmp_path / "stvg"
    args = ["eval", "stvg", "--benchmark", "hcstvg-v1", "--checkpoint", str(tiny_st_checkpoint), "--data", str(root / "test.json")]
    args += ["--data-root", str(root), "--out", str(out), "--frames", "4", "--max-new-tokens", "6", "--viz", "1"]
    assert main(args) == 0
    rows = _rows(out)
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    for row, record in zip(rows, records):
        assert row["tube"]["query"] == record["caption"] and isinstance(row["tube"]["raw_text"], str)
        assert row["status"] == row["tube"]["status"]
    metrics = json.loads((out / "metrics.json").read_text())
    counts = metrics["counts"]
    assert counts["samples"] == 2 and counts["errors"] == 0 and counts["missing"] == 0
    assert counts["unparsable"] == sum(r["status"] != "ok" for r in rows)
    assert metrics == D.score(D.BENCHMARKS["hcstvg-v1"], [("test", r) for r in records], {r["id"]: r for r in rows})
    assert (out / "viz" / f"{records[0]['id']}.mp4").is_file()

    before = (out / "predictions.rank0-of-1.jsonl").read_text()
    assert main(args) == 0  # everything is done: nothing predicted again, same metrics
    assert (out / "predictions.rank0-of-1.jsonl").read_text() == before
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_eval_vtg_and_rec_with_a_tiny_checkpoint(tiny_st_checkpoint, data, tmp_path):
    root, records, rec = data
    vtg = tmp_path / "vtg.jsonl"
    vtg.write_text("".join(json.dumps({**r, "task": "vtg", "boxes": []}) + "\n" for r in records))
    common = ["--checkpoint", str(tiny_st_checkpoint), "--data-root", str(root), "--frames", "4", "--max-new-tokens", "6"]
    assert main(["eval", "vtg", "--benchmark", "charades-sta", "--data", str(vtg), "--out", str(tmp_path / "vtg"), *common]) == 0
    assert len(_rows(tmp_path / "vtg")) == 2
    assert "R@1,IoU=0.5" in json.loads((tmp_path / "vtg" / "metrics.json").read_text())["splits"]["test"]["all"]

    assert main(["eval", "rec", "--benchmark", "refcocog", "--data", f"val={root / 'val.json'}", "--out", str(tmp_path / "rec"),
                 *common]) == 0
    rows = _rows(tmp_path / "rec")
    assert all(r["status"] == "ok" and len(r["tube"]["frames"]) == 1 for r in rows)  # REC needs no parsed span
    box = rows[0]["tube"]["frames"][0]["box_xyxy"]
    assert 0 <= box[0] <= box[2] <= CONFIG.width and 0 <= box[1] <= box[3] <= CONFIG.height
    result = json.loads((tmp_path / "rec" / "metrics.json").read_text())
    assert result["splits"]["val"]["all"]["n"] == 2 and 0.0 <= result["splits"]["val"]["all"]["Acc@0.5"] <= 1.0


@pytest.mark.upstream
def test_eval_stvg_with_a_tiny_llava_next_checkpoint(qwen_tokenizer, tiny_siglip_repo, data, tmp_path):
    from llava_st.hosts.llava_next.loading import save_st_model
    from llava_st.testing.upstream import tiny_llava_st_qwen

    root, records, _ = data
    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, num_queries=4)
    checkpoint = save_st_model(model, tokenizer, tmp_path / "llava-st-qwen-tiny")
    out = tmp_path / "stvg"
    assert main(["eval", "stvg", "--checkpoint", str(checkpoint), "--data", str(root / "test.json"), "--data-root", str(root),
                 "--out", str(out), "--frames", "2"]) == 0
    rows = _rows(out)
    assert [r["tube"]["query"] for r in rows] == [r["caption"] for r in records]
    assert json.loads((out / "metrics.json").read_text())["counts"]["samples"] == 2


def test_eval_frames_out_of_range_is_one_error_line_before_predicting(tiny_st_checkpoint, data, tmp_path, capsys):
    root, _, _ = data
    for frames in ("0", "-1", "9", "100000"):
        args = ["eval", "stvg", "--checkpoint", str(tiny_st_checkpoint), "--data", str(root / "test.json"), "--data-root", str(root)]
        assert main(args + ["--out", str(tmp_path / "o"), "--frames", frames]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("llava-st eval: error: frames must be from 1 to 8"), err
    assert not (tmp_path / "o").exists()
