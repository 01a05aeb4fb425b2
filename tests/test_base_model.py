"""The base model recipe (llava_st.recipes.base_model): questions, scoring, an end-to-end run of a few
steps, determinism, and the committed checkpoint's recipe.json against the evaluator."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from llava_st.data.schema import validate_record
from llava_st.recipes import base_model as bm

COMMITTED = Path(bm.__file__).resolve().parents[1] / "checkpoints" / "llava-st-base"


def test_scoring_a_right_answer_1_and_a_wrong_one_0():
    assert bm.score_answer("Red.", "red") == 1
    assert bm.score_answer("  From 2.0s to 6.0s. ", "From 2.0s to 6.0s.") == 1
    assert bm.score_answer("blue", "red") == 0
    assert bm.score_answer("From 2.0s to 5.0s.", "From 2.0s to 6.0s.") == 0
    caption = "a small red circle moves left from 2 s to 6 s"
    assert bm.score_caption(caption, caption) == (1, 1.0)
    exact, partial = bm.score_caption("a small blue circle moves left from 2 s to 7 s", caption)
    assert exact == 0 and partial == pytest.approx(4 / 6)
    assert bm.score_caption("a red thing", caption) == (0, 0.0)
    assert bm.caption_fields("a large white square stays still from 0 s to 7 s")["motion"] == "still"


def test_clips_are_deterministic_valid_and_their_questions_single_out_one_object():
    for index in range(20):
        frames, record, items = bm.make_clip(index, 10)
        frames2, record2, items2 = bm.make_clip(index, 10)
        assert np.array_equal(frames, frames2) and record == record2 and items == items2
        assert validate_record(record) == []
        kinds = [it["kind"] for it in items]
        assert set(kinds) - {"caption"} == set(bm.KINDS) - {"caption"}, kinds
        turns = record["conversations"]
        assert len(turns) == 2 * len(items)
        assert sorted(turns[1::2], key=lambda t: t["value"]) == sorted(({"from": "gpt", "value": it["answer"]} for it in items),
                                                                         key=lambda t: t["value"])
    # a description picks exactly one object of the scene
    _, _, scene = bm.make_stvg(3, 10, bm.BASE_VIDEOS, "x")
    rng = np.random.default_rng(0)
    for obj in scene:
        ref = bm.referent(obj, scene, "color", rng)
        if ref is not None:
            assert obj.color not in ref.split()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_recipe_end_to_end_gives_a_plain_deterministic_checkpoint(tmp_path, qwen_tokenizer):
    from safetensors import safe_open
    from transformers import LlavaOnevisionForConditionalGeneration

    recipe = bm.BaseRecipe(steps=3, train_videos=6, batch_size=2, eval_videos=2, warmup=0)
    vocab_before = len(qwen_tokenizer)
    runs = []
    for n in range(2):
        out = tmp_path / f"ckpt{n}"
        summary = bm.run(out, tmp_path / f"result{n}.json", recipe, data_dir=tmp_path / "data", logging_steps=1, tokenizer=qwen_tokenizer)
        runs.append((out, summary))
    assert len(qwen_tokenizer) == vocab_before  # the caller's tokenizer is not changed
    (a, sa), (b, sb) = runs
    assert _sha(a / "model.safetensors") == _sha(b / "model.safetensors")  # fixed seed: the same weights
    assert sa["heldout"] == sb["heldout"]

    model, tokenizer = bm.load_base(a)
    assert type(model) is LlavaOnevisionForConditionalGeneration
    assert "<video>" in tokenizer.get_vocab() and not any(t.startswith("<r_") for t in tokenizer.get_vocab())
    config = json.loads((a / "config.json").read_text())
    assert config["model_type"] == "llava_onevision" and not any(k.startswith("st_") for k in config)
    with safe_open(str(a / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("decoder" in k for k in keys)  # no space decoder (whatever the host calls it)
    assert model.config.text_config.hidden_size == 128 and model.config.text_config.num_hidden_layers == 2
    assert model.config.vision_config.image_size == 64 and model.config.vision_config.patch_size == 8

    recipe_json = json.loads((a / "recipe.json").read_text())
    assert recipe_json["steps"] == 3 and recipe_json["seeds"]["heldout_clips"] == bm.HELD_OUT_SEED
    assert recipe_json["seeds"]["train_clips"] != recipe_json["seeds"]["heldout_clips"]
    assert set(recipe_json["heldout"]["qa"]) == set(bm.KINDS) - {"caption"}
    assert json.loads((tmp_path / "result0.json").read_text())["heldout"] == recipe_json["heldout"]
    assert [row["step"] for row in recipe_json["log_history"] if "loss" in row] == [1, 2, 3]
    # a grounding variant converts from it: queries and decoder added, every base weight kept
    from llava_st.hosts.hf import convert_base
    from llava_st.recipes.synthetic_stg import demo_st

    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    st_model, processor = convert_base(model, tokenizer, demo_st())
    assert len(processor.query_token_ids) == demo_st().num_queries + 1
    st_state = st_model.state_dict()
    assert set(base_state) < set(st_state) and all("decoder" in k for k in set(st_state) - set(base_state))
    rows = min(processor.query_token_ids)  # the query tokens' rows start at the vocabulary's mean
    assert all((st_state[k][:rows] == v[:rows]).all() for k, v in base_state.items())
    model, tokenizer = bm.load_base(a)
    # the evaluator re-run on the saved checkpoint gives the recorded answers
    again = bm.evaluate_base(model, tokenizer, tmp_path / "data", 2, bm.HELD_OUT_SEED, keep_answers=2)
    assert again["qa"] == recipe_json["heldout"]["qa"] and again["caption"] == recipe_json["heldout"]["caption"]


@pytest.mark.skipif(not (COMMITTED / "recipe.json").is_file(), reason="no committed base checkpoint")
def test_committed_checkpoint_reproduces_its_recorded_answers(tmp_path):
    recipe_json = json.loads((COMMITTED / "recipe.json").read_text())
    assert bm.checkpoint_bytes(COMMITTED, without=()) <= 10 * 2**20
    assert not any(k.startswith("st_") for k in json.loads((COMMITTED / "config.json").read_text()))
    spot = recipe_json["spot_check"]
    model, tokenizer = bm.load_base(COMMITTED)
    result = bm.evaluate_base(model, tokenizer, tmp_path, spot["clips"], recipe_json["seeds"]["heldout_clips"], keep_answers=spot["clips"])
    assert result["answers"] == spot["answers"]
    assert 0.0 <= recipe_json["heldout"]["qa"]["colour"]["accuracy"] <= 1.0


def test_readme_table_shows_the_base_models_accuracies(tmp_path):
    from bench import readme_table

    data = {"steps": 3000, "train_seconds": 2100.0, "torch_threads": 1, "device": "cpu", "date": "today", "checkpoint_bytes": 7 * 2**20,
            "heldout": {"seed": 2025, "clips": 200, "caption": {"exact": 0.25, "partial": 0.75, "n": 160},
                        "qa": {"colour": {"accuracy": 0.9, "majority_baseline": 0.2, "n": 200, "correct": 180}}}}
    (tmp_path / "base_model.json").write_text(json.dumps(data))
    section = readme_table.base_model_section(readme_table.load_base_model(tmp_path))
    assert "| colour | 90.0 | 20.0 | 200 |" in section and "25.0 / 75.0" in section
    text = "a\n<!-- base:start -->\nold\n<!-- base:end -->\nb"
    assert readme_table.update_readme(text, section, readme_table.BASE_START, readme_table.BASE_END).count("| colour |") == 1
    assert "No base model results yet" in readme_table.base_model_section(None)
