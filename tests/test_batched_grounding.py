"""Several descriptions of one video are prefilled and decoded as one batch on the shared video KV
cache (core.generation.generate_on_prefix, used by both hosts); each answer and its boxes equal those
of grounding that description alone. Real tiny transformers / upstream models, greedy decoding."""

import pytest
import torch
from transformers import DynamicCache

from llava_st.core.config import STConfig
from llava_st.core.generation import generate_on_prefix
from llava_st.core.grounder import Grounder

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# token lengths differ (1 to 12 words), so the packed rows have different lengths
DESCRIPTIONS = ["box", "the red box moving right", "the grey background on the left of the frame behind the small red box", "a"]


def sharpen(modules, gain: float = 2.0, seed: int = 0) -> None:
    """Redraw the LLM's matrices (std gain / sqrt(fan_in)). At the default init (std 0.02) a tiny random
    LLM writes the same answer whatever the description; sharpened, each answer depends on its own
    context (description, positions, mask), so a batched row that saw the wrong tokens would differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                if p.ndim == 2:
                    p.copy_(torch.randn(p.shape, generator=g) * gain / p.shape[1] ** 0.5)


def assert_same(together, alone):
    """[(text, boxes or None)] of one batched call against the calls one by one: same text, boxes within 1e-5."""
    assert len(together) == len(alone)
    for (text_a, boxes_a), (text_b, boxes_b) in zip(together, alone):
        assert text_a == text_b
        if boxes_b is None:
            assert boxes_a is None
        else:
            assert boxes_a.shape == boxes_b.shape
            torch.testing.assert_close(boxes_a, boxes_b, atol=1e-5, rtol=0)


@pytest.fixture(scope="module", params=["interleave", "after", "none"])
def hf_grounder(request, qwen_tokenizer):
    from llava_st.hosts.hf.grounder import HFGrounder
    from llava_st.recipes.tiny_model import build_tiny_st

    model, processor = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8, query_mode=request.param), seed=1)
    sharpen([model.language_model])
    return HFGrounder(model, processor, frames=4, max_new_tokens=None if request.param == "none" else 12)


def test_transformers_host_batch_equals_one_by_one(hf_grounder, moving_box_video):
    path = moving_box_video[0]
    assert isinstance(hf_grounder, Grounder)
    times, _, together = hf_grounder.predict_video(path, DESCRIPTIONS)
    alone = [hf_grounder.predict_video(path, [d])[2][0] for d in DESCRIPTIONS]
    assert_same(together, alone)
    assert len({text for text, _ in together}) > 1, "answers must depend on the description"
    tubes = hf_grounder.ground(path, DESCRIPTIONS)
    for tube, single in zip(tubes, (hf_grounder.ground(path, [d])[0] for d in DESCRIPTIONS)):
        assert (tube["raw_text"], tube["span"], tube["status"]) == (single["raw_text"], single["span"], single["status"])
        assert [f["t"] for f in tube["frames"]] == [f["t"] for f in single["frames"]]
        for a, b in zip(tube["frames"], single["frames"]):
            assert a["box_norm"] == pytest.approx(b["box_norm"], abs=2e-5)
    if hf_grounder.model.space_decoder is not None:
        assert not torch.equal(together[0][1], together[1][1]), "boxes must depend on the description"


def test_transformers_host_image_batch_equals_one_by_one(hf_grounder, tmp_path):
    import numpy as np
    from PIL import Image

    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(30, 70, 3), dtype=np.uint8)).save(image)
    _, together = hf_grounder.predict_image(str(image), DESCRIPTIONS[:3], max_new_tokens=6)
    alone = [hf_grounder.predict_image(str(image), [d], max_new_tokens=6)[1][0] for d in DESCRIPTIONS[:3]]
    assert_same(together, alone)


def _prefix_cache(grounder, path):
    """The transformers host's video prefix run once: (CausalLM, cache, suffix ids per description)."""
    from llava_st.data.templates import instruction
    from llava_st.data.video import read_video
    from llava_st.hosts.hf.grounder import causal_lm
    from llava_st.hosts.hf.prompt import question_suffix, video_prefix

    model, proc = grounder.model, grounder.processor
    pixels, sample = read_video(path, 4, force_sample=True)
    cache = DynamicCache()
    model(input_ids=torch.tensor([proc.encode(video_prefix(4, sample.duration, sample.times))]),
          pixel_values_videos=proc.video_pixels(pixels)[None], past_key_values=cache, use_cache=True)
    return causal_lm(model), cache, [proc.encode(question_suffix(instruction("stvg", d))) for d in DESCRIPTIONS]


def test_rows_stop_at_their_own_stop_token_and_the_cache_is_cropped(hf_grounder, moving_box_video):
    lm, cache, suffixes = _prefix_cache(hf_grounder, moving_box_video[0])
    prefix = cache.get_seq_length()
    free = generate_on_prefix(lm, cache, suffixes, 10, stop_ids=-1)
    assert cache.get_seq_length() == prefix
    assert [len(r.token_ids) for r in free] == [10] * len(suffixes)  # no stop: every row runs to the budget
    assert [tuple(r.hidden.shape[:1]) for r in free] == [(len(s),) for s in suffixes]
    # a stop token that ends row 0 after 3 tokens and that some other row never generates
    stop = free[0].token_ids[3]
    first = free[0].token_ids.index(stop)
    others = [r for r in free[1:] if stop not in r.token_ids]
    assert others, "pick another seed: every row generates the stop token"
    stopped = generate_on_prefix(lm, cache, suffixes, 10, stop_ids={stop})
    assert stopped[0].token_ids == free[0].token_ids[:first]
    for row, unstopped in zip(stopped, free):
        cut = unstopped.token_ids.index(stop) if stop in unstopped.token_ids else 10
        assert row.token_ids == unstopped.token_ids[:cut]
    assert sorted({len(r.token_ids) for r in stopped}) != [len(stopped[0].token_ids)], "rows finished at different steps"
    for row, suffix in zip(stopped, suffixes):
        (single,) = generate_on_prefix(lm, cache, [suffix], 10, stop_ids={stop})
        assert single.token_ids == row.token_ids
        torch.testing.assert_close(single.hidden, row.hidden, atol=1e-5, rtol=0)
    assert cache.get_seq_length() == prefix


@pytest.mark.upstream
@pytest.mark.parametrize("query_mode", ["interleave", "none"])
def test_llava_next_host_batch_equals_one_by_one(qwen_tokenizer, tiny_siglip_repo, moving_box_video, query_mode):
    from llava_st.hosts.llava_next.grounder import LlavaNextGrounder
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, num_queries=4, seed=1, st_query_mode=query_mode)
    sharpen([model.get_model().layers, model.get_model().embed_tokens, model.lm_head])
    grounder = LlavaNextGrounder(model, tokenizer, model.get_vision_tower().image_processor, frames=4, max_new_tokens=12)
    assert isinstance(grounder, Grounder)
    path = moving_box_video[0]
    captured = []
    original = grounder._generate

    def recording(*args):
        captured.append(original(*args))
        return captured[-1]

    grounder._generate = recording
    tubes = grounder.ground(path, DESCRIPTIONS)
    singles = [grounder.ground(path, [d])[0] for d in DESCRIPTIONS]
    together, alone = captured[0], [c[0] for c in captured[1:]]
    assert_same(together, alone)
    assert len({text for text, _ in together}) > 1, "answers must depend on the description"
    for tube, single in zip(tubes, singles):
        assert (tube["raw_text"], tube["span"], tube["status"]) == (single["raw_text"], single["span"], single["status"])
        for a, b in zip(tube["frames"], single["frames"]):
            assert a["box_norm"] == pytest.approx(b["box_norm"], abs=2e-5)
    if query_mode != "none":
        assert together[0][1].shape == (4, 4)
        assert not torch.equal(together[0][1], together[1][1]), "boxes must depend on the description"


def test_transformers_host_batch_equals_the_models_own_generate(hf_grounder, moving_box_video):
    """Anchors positions and masks: every batched answer is what transformers' generate() writes for the
    whole prompt of that description alone."""
    from llava_st.data.templates import instruction
    from llava_st.data.video import read_video
    from llava_st.hosts.hf.prompt import question_suffix, video_prefix

    model, proc = hf_grounder.model, hf_grounder.processor
    _, _, together = hf_grounder.predict_video(moving_box_video[0], DESCRIPTIONS, max_new_tokens=8)
    pixels, sample = read_video(moving_box_video[0], 4, force_sample=True)
    for description, (text, _) in zip(DESCRIPTIONS, together):
        ids = proc.encode(video_prefix(4, sample.duration, sample.times) + question_suffix(instruction("stvg", description)))
        out = model.generate(input_ids=torch.tensor([ids]), pixel_values_videos=proc.video_pixels(pixels)[None], do_sample=False,
                             max_new_tokens=8, eos_token_id=sorted(hf_grounder.stop_ids),
                             pad_token_id=proc.tokenizer.pad_token_id or 0)
        assert proc.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip() == text
