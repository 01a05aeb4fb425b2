"""`llava-st demo`: its outputs, rerun reuse, the recipe's stages (recipes.synthetic_stg), and the committed demo
checkpoint."""

import hashlib
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from llava_st import demo
from llava_st.hosts.hf import load_st_model, save_st_model
from llava_st.recipes import synthetic_stg as stg


@pytest.fixture(scope="session")
def tiny_demo_checkpoint(cache_dir, qwen_tokenizer) -> Path:
    """A random tiny transformers-host ST model with the demo's options (8 queries), saved once."""
    from llava_st.testing.hf import build_tiny_st

    out = cache_dir / "demo-tiny-st"
    build_tiny_st(qwen_tokenizer, stg.demo_st(), out_dir=str(out))
    return out


def test_demo_writes_every_output_and_reuses_them(tiny_demo_checkpoint, tmp_path, capsys):
    out = tmp_path / "demo_out"
    argv = ["--checkpoint", str(tiny_demo_checkpoint), "--out", str(out), "--num-videos", "2", "--viz", "1", "--train-steps", "3"]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    assert "m_vIoU" in printed and "text loss" in printed and "space loss" in printed

    tubes = json.loads((out / "tubes.json").read_text())
    records = json.loads((out / "data" / "heldout.json").read_text())
    assert [t["id"] for t in tubes] == [r["id"] for r in records]
    assert all(t["query"] == r["caption"] for t, r in zip(tubes, records))
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["splits"]["test"]["all"]["n"] == 2
    assert "m_tIoU" in (out / "eval" / "table.md").read_text()
    assert list((out / "eval" / "viz").glob("*.mp4"))
    assert (out / "loss_curve.png").stat().st_size > 0
    rows = json.loads((out / "losses.json").read_text())
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss_text", "loss_l1", "loss_giou"))

    predictions = out / "eval" / "predictions.rank0-of-1.jsonl"
    video = out / "data" / records[0]["video"]
    stamps = (predictions.read_text(), video.stat().st_mtime_ns)
    written = predictions.stat().st_mtime_ns
    assert demo.main(argv[:-2] + ["--train-steps", "0"]) == 0
    assert (predictions.read_text(), video.stat().st_mtime_ns) == stamps
    assert predictions.stat().st_mtime_ns == written  # reused, not rewritten

    # Other weights at the same path: the predictions are made again, not reused.
    other = tmp_path / "other"
    shutil.copytree(tiny_demo_checkpoint, other)
    _, model, processor = load_st_model(other)
    with torch.no_grad():
        model.space_decoder.head.layers[-1].bias.add_(1.0)
    save_st_model(model, processor, other)
    assert demo.main(["--checkpoint", str(other)] + argv[2:-2] + ["--train-steps", "0"]) == 0
    stamp = json.loads((out / "eval" / "checkpoint.json").read_text())
    assert stamp["checkpoint"] == str(other.resolve())
    assert predictions.stat().st_mtime_ns != written  # grounded again (a random model's text may repeat)


def test_demo_without_a_checkpoint_says_how_to_make_one(tmp_path, capsys):
    assert demo.main(["--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(tmp_path / "nothing") in line and "--checkpoint DIR" in line and "make demo-train" in line


def test_recipe_trains_both_stages_and_saves_a_loadable_checkpoint(tmp_path):
    from llava_st.api import load_grounder

    stages = (stg.Stage("box", 2, "cosine", 1, 0), stg.Stage("enter", 1, "constant", 0, 1),
              stg.Stage("task+box", 2, "constant", 0, 2, 5e-4))
    recipe = stg.Recipe(base=None, train_videos=8, stages=stages, batch_size=2,
                        image_size=32, patch_size=8, vision_hidden=32, text_hidden=64)
    info = stg.train_recipe(str(tmp_path / "ckpt"), recipe, data_dir=tmp_path / "data")
    stages = [row["stage"] for row in info["log_history"] if "loss_text" in row]
    assert stages == ["box", "box", "enter", "task+box", "task+box"]
    rates = [row["learning_rate"] for row in info["log_history"] if row.get("stage") == "task+box" and "learning_rate" in row]
    assert rates and all(r == 5e-4 for r in rates)  # a stage's own learning rate, constant
    enter = json.loads((tmp_path / "data" / "enter.json").read_text())
    assert all(len(r["boxes"]) == round((r["span"][1] - r["span"][0]) * stg.VIDEOS.fps) + 1 for r in enter)
    with pytest.raises(ValueError, match="unknown stage data"):
        stg.train_recipe(str(tmp_path / "bad"), stg.Recipe(train_videos=2, stages=(stg.Stage("boxes", 1),)), data_dir=tmp_path / "data")
    assert info["st"]["decoder_projections"] and info["st"]["num_queries"] == stg.FRAMES and info["base"] is None
    box = json.loads((tmp_path / "data" / "box.json").read_text())
    last = (stg.VIDEOS.num_frames - 1) / stg.VIDEOS.fps
    assert all(r["span"] == [0.0, last] for r in box)  # the box stage: the target in every frame
    assert all(len(r["boxes"]) == stg.VIDEOS.num_frames for r in box)
    grounder = load_grounder(str(tmp_path / "ckpt"), frames=stg.FRAMES)
    tube = grounder.ground(str(tmp_path / "data" / box[0]["video"]), [box[0]["caption"]])[0]
    assert tube["query"] == box[0]["caption"]


def test_recipe_fine_tunes_the_base_reproducibly_in_one_process(tmp_path):
    """A recipe with a base starts from the committed base (its weights kept, queries and decoder new) and
    is deterministic: the same recipe twice gives the same weights; another seed another decoder."""
    from safetensors.torch import load_file

    from llava_st.recipes.base_model import CHECKPOINT as BASE_CHECKPOINT

    recipe = stg.Recipe(base=stg.BASE, train_videos=4, stages=(stg.Stage("task", 2, "cosine", 1, 0),), batch_size=2)
    runs = []
    for name, r in (("a", recipe), ("b", recipe), ("c", replace(recipe, seed=1))):
        info = stg.train_recipe(str(tmp_path / name), r, data_dir=tmp_path / f"data-{name}")
        runs.append(load_file(str(tmp_path / name / "model.safetensors")))
    assert info["base"]["name"] == stg.BASE and len(info["base"]["model.safetensors sha256"]) == 64
    assert runs[0].keys() == runs[1].keys() and all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    decoder = [k for k in runs[0] if k.startswith("space_decoder.")]
    assert decoder and any(not torch.equal(runs[0][k], runs[2][k]) for k in decoder)
    base = load_file(str(BASE_CHECKPOINT / "model.safetensors"))
    tower = next(k for k in base if "vision_tower" in k and k.endswith("patch_embedding.weight"))
    trained = next(k for k in runs[0] if k.endswith("patch_embedding.weight"))
    assert base[tower].shape == runs[0][trained].shape  # the base's tower, fine-tuned a little
    assert not torch.equal(base[tower], runs[0][trained]) and (base[tower] - runs[0][trained]).abs().max() < 0.05


def test_identity_blocks_make_every_tower_and_llm_block_an_identity_at_first(qwen_tokenizer):
    """init_identity_blocks: each residual block of SigLIP and Qwen2 passes its input through unchanged
    (so the LLM's visual states are the projected patch features), and the zeroed layers still learn."""
    import torch

    from llava_st.testing.hf import build_tiny_st

    model, _ = build_tiny_st(qwen_tokenizer, seed=0)
    stg.init_identity_blocks(model)
    llm = model.language_model.model
    x = torch.randn(1, 5, model.config.text_config.hidden_size)
    position_ids = torch.arange(5)[None]
    rotary = llm.rotary_emb(x, position_ids)
    for layer in llm.layers:
        y = layer(x, position_ids=position_ids, position_embeddings=rotary)[0]
        torch.testing.assert_close(y, x)
    pixels = torch.randn(3, model.config.vision_config.hidden_size)[None]
    for layer in model.vision_tower.vision_model.encoder.layers:
        torch.testing.assert_close(layer(pixels, None)[0], pixels)
    llm.layers[0](x, position_ids=position_ids, position_embeddings=rotary)[0].pow(2).sum().backward()
    assert llm.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0
    assert llm.layers[0].self_attn.o_proj.weight.grad.abs().sum() > 0


def test_loss_plot_is_written(tmp_path):
    rows = [{"step": s, "loss_text": 2.0 / s, "loss_l1": 0.5 / s, "loss_giou": 1.0 / s} for s in (1, 2, 3)]
    assert stg.space_term(rows[0]) == pytest.approx(3 * 0.5 + 1.0)
    png = stg.plot_losses(rows, tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SHIPPED = demo.CHECKPOINT


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no committed demo checkpoint")
def test_committed_checkpoint_is_small_and_grounds_held_out_videos(tmp_path):
    from llava_st.api import load_grounder
    from llava_st.data.synthetic import write_split

    weights = SHIPPED / "model.safetensors"
    assert weights.stat().st_size <= 20 * 2**20
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) <= 20 * 2**20
    recipe = json.loads((SHIPPED / "recipe.json").read_text())
    assert "m_vIoU" in json.dumps(recipe["heldout"])
    records = write_split(tmp_path, 2, stg.HELD_OUT_SEED, stg.VIDEOS, "heldout", progress=False)
    grounder = load_grounder(str(SHIPPED), frames=stg.FRAMES)
    for record in records:
        (tube,) = grounder.ground(str(tmp_path / record["video"]), [record["caption"]])
        assert tube["status"] == "ok", tube["raw_text"]
        assert tube["frames"] and all(len(f["box_xyxy"]) == 4 for f in tube["frames"])


def test_readme_demo_section_is_generated_from_the_demo_train_json(tmp_path):
    from bench import readme_table

    assert "No demo-train run recorded yet" in readme_table.demo_section(tmp_path)
    metrics = {"m_tIoU": 1.0, "m_vIoU": 0.712, "vIoU@0.3": 0.9, "vIoU@0.5": 0.8}
    data = {"date": "2026-12-03 07:00 UTC", "seconds": 690.0, "held_out_seed": 2024, "model.safetensors sha256": "ab" * 32,
            "recipe": {"base": "llava-st-base", "seed": 0, "stages": [{"steps": 1500}, {"steps": 500}]},
            "heldout": {name: metrics for name in demo.RECIPE_EVALS}}
    (tmp_path / "demo_checkpoint.json").write_text(json.dumps(data))
    section = readme_table.demo_section(tmp_path)
    assert "2,000 steps from `llava-st-base` in 11.5 min of Trainer time (one process" in section
    assert "not the shipped checkpoint's" in section  # "ab" * 32 is not the sha256 of the committed weights
    shipped = hashlib.sha256((SHIPPED / "model.safetensors").read_bytes()).hexdigest()
    data.update({"wall_seconds": 900.0, "model.safetensors sha256": shipped})
    (tmp_path / "demo_checkpoint.json").write_text(json.dumps(data))
    section = readme_table.demo_section(tmp_path)
    assert "11.5 min of Trainer time, 15.0 min in all" in section and ", the shipped checkpoint's;" in section
    assert section.count("| 100.0 | 71.2 | 90.0 | 80.0 |") == len(demo.RECIPE_EVALS)
    text = readme_table.update_readme(f"a\n{readme_table.DEMO_START}\nold\n{readme_table.DEMO_END}\nb\n", section,
                                      readme_table.DEMO_START, readme_table.DEMO_END)
    assert "old" not in text and "| 100 videos, 3 distractors |" in text
    scratch = dict(data, recipe=dict(data["recipe"], base=None), heldout={"100 videos": dict(metrics, m_vIoU=0.5)})
    (tmp_path / "demo_checkpoint_scratch.json").write_text(json.dumps(scratch))  # the earlier recipe: from random weights
    section = readme_table.demo_section(tmp_path)
    assert "2,000 steps from random weights in" in section and "| from scratch | 100 videos | 100.0 | 50.0 | 90.0 | 80.0 |" in section
    assert section.count("| from the base |") == len(demo.RECIPE_EVALS)
