"""LLaVA-NeXT host: config validation, registration, upstream equivalence with ST switched off, building
from a plain LLaVA-Video checkpoint, upstream's get_model, and the ablation switches."""

import subprocess
import sys
import types

import pytest
import torch

upstream = pytest.mark.upstream
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_import_llava_st_does_not_import_upstream():
    code = "import sys, llava_st, llava_st.core; sys.exit('llava' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@upstream
def test_config_validates_and_round_trips():
    from llava_st.hosts.llava_next import LlavaSTQwenConfig

    with pytest.raises(ValueError, match="query_mode.*'sideways'"):
        LlavaSTQwenConfig(st_query_mode="sideways")
    with pytest.raises(ValueError, match="num_queries.*0"):
        LlavaSTQwenConfig(st_num_queries=0)
    with pytest.raises(ValueError, match="st_query_token_ids.*3 ids, got 2"):
        LlavaSTQwenConfig(st_num_queries=2, st_query_token_ids=[5, 6])
    with pytest.raises(ValueError, match="mm_newline_position.*'diagonal'"):
        LlavaSTQwenConfig(mm_newline_position="diagonal")
    config = LlavaSTQwenConfig(st_num_queries=2, st_query_mode="after", st_lambda_l1=2.0, st_query_token_ids=[7, 8, 9])
    again = LlavaSTQwenConfig.from_dict(config.to_dict())
    assert again.to_dict()["model_type"] == "llava_st_qwen"
    assert again.st == config.st and again.st.query_mode == "after" and again.st_query_token_ids == [7, 8, 9]


@upstream
def test_registered_with_auto_classes_and_on_transformers():
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    from llava_st.hosts.llava_next import LlavaSTQwenConfig, LlavaSTQwenForCausalLM

    assert isinstance(AutoConfig.for_model("llava_st_qwen"), LlavaSTQwenConfig)
    assert AutoModelForCausalLM._model_mapping[LlavaSTQwenConfig] is LlavaSTQwenForCausalLM
    assert transformers.LlavaSTQwenForCausalLM is LlavaSTQwenForCausalLM
    # transformers 4.45 replaces its module object when processing_utils is first imported (the
    # transformers host imports it); the registration must still be on the module `import` returns.
    import llava_st.hosts.hf  # noqa: F401

    assert sys.modules["transformers"].LlavaSTQwenForCausalLM is LlavaSTQwenForCausalLM


def _video_batch(tokenizer):
    """A right-padded batch: a 2-frame video item and a text-only item, with labels."""
    from llava.constants import IMAGE_TOKEN_INDEX

    torch.manual_seed(3)
    first = tokenizer("user\n").input_ids + [IMAGE_TOKEN_INDEX] + tokenizer("\nWhat moves? The box.").input_ids
    second = tokenizer("Hello there").input_ids
    ids = torch.zeros(2, len(first), dtype=torch.long)
    mask = torch.zeros(2, len(first), dtype=torch.bool)
    ids[0], mask[0] = torch.tensor(first), True
    ids[1, : len(second)], mask[1, : len(second)] = torch.tensor(second), True
    labels = torch.where(mask & (ids >= 0), ids, torch.full_like(ids, -100))
    images = [torch.randn(2, 3, 384, 384), torch.zeros(1, 3, 384, 384)]
    return dict(input_ids=ids, attention_mask=mask, labels=labels, images=images, modalities=["video", "image"],
                image_sizes=[(384, 384)] * 2)


@upstream
def test_st_switched_off_gives_upstream_logits(qwen_tokenizer, tiny_siglip_repo):
    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    from llava_st.testing.upstream import tiny_llava_qwen_config, tiny_llava_st_qwen

    tokenizer, st_model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, st_query_mode="none")
    assert st_model.space_decoder is None
    config = tiny_llava_qwen_config(qwen_tokenizer, tiny_siglip_repo)
    config._attn_implementation = "sdpa"
    reference = LlavaQwenForCausalLM(config).eval()
    reference.load_state_dict(st_model.state_dict())
    batch = _video_batch(tokenizer)
    with torch.no_grad():
        ours, theirs = st_model(**batch), reference(**batch)
        as_tuple = st_model(**batch, return_dict=False)
    assert type(ours).__name__ == "LlavaSTCausalLMOutput" and ours.pred_boxes is None  # the one output type of both hosts
    assert torch.equal(ours.logits, theirs.logits)
    assert torch.equal(ours.loss, theirs.loss) and torch.equal(ours.loss_text, theirs.loss)
    assert torch.equal(as_tuple[0], theirs.loss) and torch.equal(as_tuple[1], theirs.logits)
    # λ_time weighs the text loss here too, as on the transformers host (combine_losses of the text loss alone)
    st_model.config.st_lambda_time = 0.5
    with torch.no_grad():
        halved = st_model(**batch)
    assert torch.allclose(halved.loss, 0.5 * theirs.loss) and torch.equal(halved.loss_text, theirs.loss)


@upstream
def test_from_plain_llava_video_keeps_every_other_weight(tiny_llava_qwen_dir):
    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    from llava_st.core.config import STConfig
    from llava_st.hosts.llava_next.loading import from_plain_llava_video

    plain = LlavaQwenForCausalLM.from_pretrained(str(tiny_llava_qwen_dir), attn_implementation="sdpa").state_dict()
    tokenizer, model = from_plain_llava_video(tiny_llava_qwen_dir, STConfig(num_queries=80, decoder_projections=True))
    ids = model.config.st_query_token_ids
    assert len(ids) == 81 and tokenizer.convert_tokens_to_ids(["<r_0>", "<r_80>"]) == [ids[0], ids[-1]]
    ours = model.state_dict()
    rows = plain["model.embed_tokens.weight"].shape[0]
    assert ours["model.embed_tokens.weight"].shape[0] == max(ids) + 1 > rows  # 81 queries need new rows
    for name, value in plain.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            kept = [i for i in range(rows) if i not in set(ids)]
            assert torch.equal(ours[name][kept], value[kept]), name
            mean = value[: ids[0]].mean(0)
            assert torch.allclose(ours[name][ids], mean.expand(len(ids), -1), atol=1e-6)
        else:
            assert torch.equal(ours[name], value), name
    new = set(ours) - set(plain)
    assert new and all(k.startswith("space_decoder.") for k in new)
    projection = model.space_decoder.text_proj.q
    assert torch.equal(projection.weight, torch.eye(projection.weight.shape[0])) and not projection.bias.any()


@upstream
def test_upstream_get_model_resolves_model_class_name(tiny_llava_qwen_dir, tiny_siglip_repo):
    from llava.train.train import ModelArguments, get_model

    import llava_st.hosts.llava_next  # noqa: F401  (the plug-in import that registers LlavaSTQwen)
    from llava_st.hosts.llava_next import LlavaSTQwenForCausalLM

    model_args = ModelArguments(model_name_or_path=str(tiny_llava_qwen_dir), model_class_name="LlavaSTQwen", vision_tower=tiny_siglip_repo)
    training_args = types.SimpleNamespace(attn_implementation="sdpa", cache_dir=None, bf16=False)
    model = get_model(model_args, training_args, {})
    assert type(model) is LlavaSTQwenForCausalLM
    assert model.config.model_type == "llava_st_qwen" and model.config.st_query_mode == "interleave"
    assert model.space_decoder is not None


@upstream
@pytest.mark.parametrize(
    "options",
    [
        dict(st_query_mode="after"),
        dict(st_dual_cross_attention=False),
        dict(num_queries=2),
    ],
    ids=["queries-after-video", "no-dual-cross-attention", "two-queries"],
)
def test_ablation_switches(qwen_tokenizer, tiny_siglip_repo, options):
    """Table 7/9 switches: each model runs forward with box targets; "after" puts every query behind
    the whole video; the number of queries is the number of <r_i> tokens minus the terminal one."""
    from llava.constants import IMAGE_TOKEN_INDEX

    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, **options)
    assert len(model.config.st_query_token_ids) == model.config.st_num_queries + 1
    batch = _video_batch(tokenizer)
    boxes = torch.tensor([[0.3, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]]).expand(2, 2, 4)
    box_mask = torch.tensor([[True, True], [False, False]])
    out = model(**batch, grounding_boxes=boxes, grounding_box_mask=box_mask)
    assert out.pred_boxes.shape == (2, 2, 4) and out.frame_mask.tolist() == [[True, True], [False, False]]
    assert torch.isfinite(out.loss) and out.loss_l1 > 0
    out.loss.backward()
    if options.get("st_query_mode") == "after":
        with torch.no_grad():
            _, index = model.prepare_grounded_inputs(batch["input_ids"], None, batch["attention_mask"], None, None, batch["images"],
                                                     batch["modalities"], batch["image_sizes"])
        p = int((batch["input_ids"][0] == IMAGE_TOKEN_INDEX).nonzero()[0, 0])
        assert index.query_index[0].tolist() == [p + 2 * 210, p + 2 * 210 + 1]
