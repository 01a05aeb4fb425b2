"""Upstream train() through llava_st's entry point with the tiny CPU recipe (train_scripts/tiny_cpu.sh)
on a mixed Uni-STG file (stvg + rec + vtg + qa, real mp4s and an image): one process with bad samples
and a resume, and DeepSpeed ZeRO-3 with two processes followed by a reload of the saved checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_upstream_data import write_mixed_data

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_llava_dir(cache_dir, qwen_tokenizer, tiny_siglip_repo):
    from llava_st.testing.upstream import build_tiny_llava_qwen

    return build_tiny_llava_qwen(cache_dir / "tiny-llava-qwen", qwen_tokenizer, tiny_siglip_repo)


def train(model_dir, data, output, *args, nproc=1, **env):
    """Run the tiny recipe with tests/scripts/train_tiny.py as the entry and extra upstream/llava_st
    arguments `args`; return its combined output."""
    environ = dict(os.environ, MODEL=str(model_dir), DATA=str(data), DATA_ROOT=str(Path(data).parent), OUTPUT=str(output),
                   NPROC=str(nproc), ENTRY=str(ROOT / "tests" / "scripts" / "train_tiny.py"),
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]), **env)
    proc = subprocess.run(["bash", str(ROOT / "train_scripts" / "tiny_cpu.sh"), *args], env=environ, cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return log


def weights(directory) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / "model.safetensors"))


def state(output) -> dict:
    return json.loads((Path(output) / "trainer_state.json").read_text())


def test_one_process_with_bad_samples_trains_to_the_end_and_resumes(tiny_llava_dir, tmp_path):
    data = write_mixed_data(tmp_path / "data", bad=True)  # 4 good, 3 unreadable files, 2 invalid records
    out = tmp_path / "llava-qwen-st-plain"
    # one epoch (7 usable entries, batches of 2); the space decoder on its own learning rate, 0 here
    log = train(tiny_llava_dir, data, out, "--st_head_lr", "0", MAX_STEPS="4")
    s = state(out)
    assert s["global_step"] == 4
    steps = [h for h in s["log_history"] if "loss" in h]
    assert [h["step"] for h in steps] == [1, 2, 3, 4]
    assert all({"loss_text", "loss_l1", "loss_giou"} <= set(h) for h in steps)
    assert any(h["loss_l1"] > 0 for h in steps)  # some batch held a grounded stvg or rec item
    summary = json.loads((out / "bad_samples_summary.json").read_text())
    assert summary == {"total": 5, "by_kind": {"invalid record": 2, "missing file": 2, "corrupt file": 1}}
    bad_ids = {json.loads(line)["id"] for line in (out / "bad_samples.jsonl").read_text().splitlines()}
    assert bad_ids == {"bad-missing-video", "bad-corrupt-video", "bad-missing-image", "bad-span", "bad-no-conversations"}
    assert log.count("bad sample bad-corrupt-video") == 1
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llava_st_qwen" and len(config["st_query_token_ids"]) == 9

    train(tiny_llava_dir, data, out, "--st_head_lr", "0", MAX_STEPS="5")  # finds checkpoint-4 in the output dir
    assert (out / "begin_steps.txt").read_text().split() == ["0", "4"]
    s = state(out)
    assert s["global_step"] == 5
    assert [h["step"] for h in s["log_history"] if "loss" in h] == [1, 2, 3, 4, 5]
    first, last = weights(out / "checkpoint-2"), weights(out)
    assert all(torch.equal(first[k], last[k]) for k in first if k.startswith("space_decoder."))
    assert not torch.equal(first["model.layers.0.mlp.up_proj.weight"], last["model.layers.0.mlp.up_proj.weight"])


def test_zero3_two_processes_saves_what_reloads(tiny_llava_dir, tmp_path):
    from llava_st.hosts.llava_next.loading import load_st_model

    data = write_mixed_data(tmp_path / "data")
    out = tmp_path / "llava-qwen-st-zero3"
    train(tiny_llava_dir, data, out, nproc=2, MASTER_PORT=str(29500 + os.getpid() % 400))
    s = state(out)
    assert s["global_step"] == 3
    # the logged terms are averaged over both ranks like `loss`, so `loss` is their weighted sum
    rows = [h for h in s["log_history"] if "loss" in h]
    for h in rows:
        assert h["loss"] == pytest.approx(h["loss_text"] + 3 * h["loss_l1"] + h["loss_giou"], rel=1e-2, abs=2e-3), h
    # the same --seed gives the same losses at every step: the new weights are initialised from it
    again = tmp_path / "llava-qwen-st-zero3-again"
    train(tiny_llava_dir, data, again, nproc=2, MASTER_PORT=str(29100 + os.getpid() % 400), SAVE_STEPS="10")
    terms = ("loss", "loss_text", "loss_l1", "loss_giou")
    assert [[h[k] for k in terms] for h in state(again)["log_history"] if "loss" in h] == [[h[k] for k in terms] for h in rows]
    assert (out / "checkpoint-2" / "global_step2").is_dir()  # DeepSpeed's own checkpoint
    first, last = weights(out / "checkpoint-2"), weights(out)
    assert not torch.equal(first["space_decoder.head.layers.0.weight"], last["space_decoder.head.layers.0.weight"])
    assert all({"loss_text", "loss_l1", "loss_giou"} <= set(h) for h in s["log_history"] if "loss" in h)

    before = torch.load(out / "before_save.pt", weights_only=False)
    tokenizer, model, _ = load_st_model(out, torch_dtype=torch.bfloat16)
    rows = model.config.st_query_token_ids
    assert tokenizer.convert_ids_to_tokens(rows) == [f"<r_{i}>" for i in range(9)]
    for name, weight in model.space_decoder.named_parameters():  # the consolidated 16-bit weights
        assert torch.equal(weight, before["decoder"][name]), name
    query_rows = model.get_input_embeddings().weight[rows]
    assert torch.equal(query_rows, before["query_rows"])
    # all rows started as the vocabulary mean; <r_0>..<r_3> (4 frames) and <r_8> (image) were trained,
    # <r_4>..<r_7> were never in a sequence
    assert torch.equal(query_rows[4], query_rows[7])
    assert not torch.equal(query_rows[0], query_rows[4]) and not torch.equal(query_rows[8], query_rows[4])

    batch = dict(before["batch"])
    batch["images"] = [image.to(torch.bfloat16) for image in batch["images"]]  # as the bf16 engine saw them
    with torch.no_grad():
        after = model(**batch)
    torch.testing.assert_close(after.logits.float(), before["logits"], rtol=0, atol=2e-2)
    torch.testing.assert_close(after.pred_boxes.float(), before["pred_boxes"], rtol=0, atol=1e-2)
