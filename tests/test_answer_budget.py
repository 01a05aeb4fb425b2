"""The answer budget of both grounders comes from the answer format: no answer in the trained format can
be cut, span-only or boxes as text (one box per sampled frame), on clips of 8 to 64 frames."""

import numpy as np
import pytest
import torch

from llava_st.core.boxes import xyxy_to_cxcywh
from llava_st.core.boxtext import answer_token_budget, parse_boxes_text
from llava_st.core.config import STConfig
from llava_st.core.timespan import format_span
from llava_st.data.targets import FrameTargets, boxes_answer
from llava_st.data.templates import REC_ANSWER
from llava_st.data.video import sample_frames


def trained_answers(times, rng, count: int):
    """(span, boxes-as-text answer) pairs as training writes them: spans snapped to sampled frames, a
    normalised box on every frame inside the span."""
    frames = len(times)
    for _ in range(count):
        i, j = sorted(int(v) for v in rng.integers(0, frames, 2))
        corners = np.sort(rng.random((frames, 2, 2)), axis=1)  # x0 <= x1, y0 <= y1
        xyxy = torch.tensor(np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], 1), dtype=torch.float32)
        mask = torch.zeros(frames, dtype=torch.bool)
        mask[i : j + 1] = True
        span = (float(times[i]), float(times[j]))
        yield span, boxes_answer(span, FrameTargets(xyxy_to_cxcywh(xyxy), mask, span), times)


@pytest.mark.parametrize("frames, total, fps", [(8, 8, 1.0), (16, 3000, 25.0), (64, 90000, 25.0)])
def test_no_trained_answer_exceeds_the_budget(qwen_tokenizer, frames, total, fps):
    times = sample_frames(total, fps, frames, force_sample=True).times
    count = lambda text: len(qwen_tokenizer(text).input_ids)  # noqa: E731
    as_text, span_only = answer_token_budget(count, times, True), answer_token_budget(count, times, False)
    rng = np.random.default_rng(frames)
    longest_text = longest_span = 0
    for span, answer in trained_answers(times, rng, 300):
        longest_text = max(longest_text, count(answer))
        longest_span = max(longest_span, count(format_span(*span)))
        assert parse_boxes_text(answer)[0].span == pytest.approx(span, abs=0.05)
    assert longest_text <= as_text and longest_span <= span_only
    # the whole clip with a box on every frame: the longest answer there is, within the margin of the budget
    xyxy = torch.tensor([[0.12, 0.30, 0.45, 0.80]] * frames)
    span = (float(times[0]), float(times[-1]))
    whole = boxes_answer(span, FrameTargets(xyxy_to_cxcywh(xyxy), torch.ones(frames, dtype=torch.bool), span), times)
    assert as_text - 8 - frames <= count(whole) <= as_text
    # the old fixed default of the transformers host (32 tokens) cut every boxes-as-text answer
    assert longest_text > 32
    assert answer_token_budget(count, [0.0], False, REC_ANSWER) == count(REC_ANSWER) + 8


@pytest.mark.parametrize("query_mode", ["interleave", "none"])
def test_transformers_grounder_generates_up_to_the_derived_budget(qwen_tokenizer, moving_box_video, query_mode, tmp_path, monkeypatch):
    """The grounder generates with the format's budget (span only with a decoder, one box per frame
    without), not a fixed number, unless max_new_tokens is given; so does the batched path (several
    descriptions in one call of core.generation.generate_on_prefix), for every row."""
    from llava_st.hosts.hf import grounder as hf_grounder
    from llava_st.hosts.hf.grounder import HFGrounder
    from llava_st.recipes.tiny_model import build_tiny_st

    model, processor = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8, query_mode=query_mode), seed=0)
    grounder = HFGrounder(model, processor, frames=8)
    times, _, _ = grounder.predict_video(moving_box_video[0], ["the red box"])
    count = lambda text: len(processor.tokenizer(text).input_ids)  # noqa: E731
    expected = answer_token_budget(count, times, query_mode == "none")
    assert grounder.answer_budget(times) == expected
    assert (expected > 8 * 20) == (query_mode == "none")  # one box per frame needs ~20 tokens each
    generated = []
    original = hf_grounder.generate_on_prefix

    def recording(lm, cache, suffixes, max_new_tokens, stop_ids):
        rows = original(lm, cache, suffixes, max_new_tokens, stop_ids)
        generated.append((len(suffixes), max_new_tokens, [len(r.token_ids) for r in rows]))
        return rows

    monkeypatch.setattr(hf_grounder, "generate_on_prefix", recording)
    grounder.ground(moving_box_video[0], ["the red box"])
    grounder.ground(moving_box_video[0], ["the red box", "the grey background on the left", "box"])
    assert [(n, budget) for n, budget, _ in generated] == [(1, expected), (3, expected)]
    assert all(length <= expected for _, _, lengths in generated for length in lengths)
    assert HFGrounder(model, processor, frames=8, max_new_tokens=5).answer_budget(times) == 5
