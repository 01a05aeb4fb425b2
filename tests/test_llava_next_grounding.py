"""LLaVA-NeXT host end to end on one STVG sample: overfitting drives the text and space losses down, the
trained model generates a tube whose span parses, several descriptions share one video encoding,
and the model survives save -> load (llava_st's loader and upstream's load_pretrained_model)."""

import pytest
import torch

pytestmark = [pytest.mark.upstream, pytest.mark.usefixtures("torch_one_thread")]

CAPTION = "the red box moving right"
OTHER = "the grey background"


@pytest.fixture(scope="module")
def sample(cache_dir):
    """A 2 s, 10 fps, 96x64 video with the box on every frame; 2 sampled frames (t = 0.0 s, 1.9 s) and
    the Uni-STG record of its tube."""
    from llava_st.testing import write_moving_box_video

    path, boxes = write_moving_box_video(cache_dir / "videos" / "box_2s.mp4", num_frames=20, fps=10.0)
    record = {
        "id": "box_2s",
        "task": "stvg",
        "caption": CAPTION,
        "span": [0.0, 1.9],
        "boxes": [{"t": i / 10.0, "xyxy": b.tolist()} for i, b in enumerate(boxes)],
        "width": 96,
        "height": 64,
        "duration": 2.0,
        "fps": 10.0,
    }
    return path, record


def _training_batch(tokenizer, image_processor, path, record):
    """Upstream's batch for the sample (prompt as the grounder builds it, answer = the snapped span)
    plus the grounding keys of core/batch.py."""
    from llava.constants import IGNORE_INDEX
    from llava.mm_utils import tokenizer_image_token

    from llava_st.core.layout import description_token_positions
    from llava_st.core.timespan import format_span, time_instruction
    from llava_st.data.targets import frame_targets
    from llava_st.data.templates import instruction
    from llava_st.data.video import read_video
    from llava_st.hosts.llava_next.grounder import prefix_text, suffix_text

    frames, fs = read_video(path, frames_upbound=2, force_sample=True)
    targets = frame_targets(record, fs.times)
    prompt = prefix_text(time_instruction(fs.duration, fs.times)) + suffix_text(instruction("stvg", CAPTION))
    answer = format_span(*targets.span) + "<|im_end|>\n"
    prompt_ids = tokenizer_image_token(prompt, tokenizer)
    ids = torch.tensor(prompt_ids + tokenizer(answer).input_ids)
    labels = ids.clone()
    labels[: len(prompt_ids)] = IGNORE_INDEX
    text = description_token_positions(ids.tolist(), tokenizer, CAPTION)
    assert text and targets.mask.all()
    return dict(
        input_ids=ids[None],
        labels=labels[None],
        attention_mask=torch.ones(1, ids.shape[0], dtype=torch.bool),
        images=[image_processor.preprocess(frames, return_tensors="pt")["pixel_values"]],
        image_sizes=[(96, 64)],
        modalities=["video"],
        grounding_boxes=targets.boxes_cxcywh[None],
        grounding_box_mask=targets.mask[None],
        grounding_text_index=torch.tensor([text]),
        grounding_text_mask=torch.ones(1, len(text), dtype=torch.bool),
    )


def _fit(model, optimizer, inputs, steps):
    """`steps` AdamW steps on `inputs`; returns [(text loss, L1 + GIoU)] per step."""
    history = []
    for _ in range(steps):
        out = model(**inputs)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        history.append((out.loss_text.item(), (out.loss_l1 + out.loss_giou).item()))
    return history


@pytest.fixture(scope="module")
def trained(qwen_tokenizer, tiny_siglip_repo, sample):
    """A tiny ST model (hidden 128, RoPE base 10^4 so that 30 steps suffice) overfitted on the sample.

    Step 1 runs the whole path (frozen tower, projector, query rows, LLM, decoder) and records which
    parameters got a gradient. To keep the test fast on 2 CPU cores, steps 2-30 then reuse the spliced
    sequence (computed once after step 1) and its GroundingIndex through forward(inputs_embeds=...,
    grounding_index=...): they train the LLM and the decoder, with projector and query rows fixed (the
    grounder later recomputes exactly that sequence). Returns (tokenizer, model, batch, spliced inputs, optimizer, losses per step,
    (names of parameters with a gradient in the full step, |gradient| per query row [N + 1])).
    """
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(
        qwen_tokenizer, tiny_siglip_repo, num_queries=4, hidden_size=128, rope_theta=10000.0,
        st_decoder_projections=True, st_decoder_residual=True,
    )
    batch = _training_batch(tokenizer, model.get_vision_tower().image_processor, *sample)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    history = _fit(model, optimizer, batch, 1)
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    query_grad = model.get_input_embeddings().weight.grad[list(model.config.st_query_token_ids)].abs().sum(-1)
    with torch.no_grad():
        (_, _, mask, _, embeds, labels), index = model.prepare_grounded_inputs(
            batch["input_ids"], None, batch["attention_mask"], None, batch["labels"], batch["images"], batch["modalities"],
            batch["image_sizes"], text_positions=[batch["grounding_text_index"][0].tolist()],
        )
    spliced = dict(
        inputs_embeds=embeds, attention_mask=mask, labels=labels, grounding_index=index,
        grounding_boxes=batch["grounding_boxes"], grounding_box_mask=batch["grounding_box_mask"],
    )
    history += _fit(model, optimizer, spliced, 29)
    return tokenizer, model.eval(), batch, spliced, optimizer, history, (with_grad, query_grad)


def test_overfitting_one_stvg_sample_drives_both_losses_down(trained):
    _, model, batch, _, _, history, (with_grad, query_grad) = trained
    assert len(history) == 30
    text, space = zip(*history)
    assert sum(text[-3:]) / 3 < 0.3 * text[0], text
    assert sum(space[-3:]) / 3 < 0.8 * space[0], space
    assert {"model.embed_tokens.weight", "model.mm_projector.0.weight"} <= with_grad
    assert any(n.startswith("space_decoder.") for n in with_grad)
    assert not any(n.startswith("model.vision_tower.") for n in with_grad)
    assert query_grad[:2].gt(0).all() and query_grad[2:].eq(0).all()  # <r_0>, <r_1> learn; unused ones not
    with torch.no_grad():
        out = model(**batch)
    assert out.pred_boxes.shape == (1, 2, 4) and out.frame_mask.all()
    assert torch.allclose(out.loss, out.loss_text + 3 * out.loss_l1 + out.loss_giou)


@pytest.fixture(scope="module")
def grounder(trained):
    """The overfitted model, trained on until it has memorised its answer (greedy decoding)."""
    from llava_st.hosts.llava_next.grounder import LlavaNextGrounder

    tokenizer, model, _, spliced, optimizer, _, _ = trained
    model.train()
    _fit(model, optimizer, spliced, 50)
    model.eval()
    return LlavaNextGrounder(model, tokenizer, model.get_vision_tower().image_processor, frames=2)


@pytest.fixture(scope="module")
def tubes(grounder, sample):
    return grounder.ground(sample[0], [CAPTION, OTHER])


def test_generate_returns_a_tube_whose_span_parses(tubes, sample):
    tube = tubes[0]
    assert tube["status"] == "ok", tube
    assert tube["span"] == [0.0, 1.9], tube["raw_text"]
    assert [f["t"] for f in tube["frames"]] == [0.0, 1.9]
    for frame in tube["frames"]:
        x0, y0, x1, y1 = frame["box_xyxy"]
        assert 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 64
    assert tube["video"]["width"] == 96 and tube["video"]["path"] == sample[0]


def test_several_descriptions_give_the_tubes_of_separate_calls(grounder, tubes, sample):
    assert [grounder.ground(sample[0], [d])[0] for d in (CAPTION, OTHER)] == tubes


def test_cached_prefix_boxes_equal_a_full_forward(trained, grounder, sample):
    """Boxes from the shared-prefix path equal the training forward's on the same full prompt."""
    from llava.mm_utils import tokenizer_image_token

    from llava_st.core.layout import description_token_positions
    from llava_st.core.timespan import time_instruction
    from llava_st.data.templates import instruction
    from llava_st.data.video import read_video
    from llava_st.hosts.llava_next.generation import Suffix, generate_grounded
    from llava_st.hosts.llava_next.grounder import prefix_text, suffix_text

    tokenizer, model, batch = trained[:3]
    _, fs = read_video(sample[0], frames_upbound=2, force_sample=True)
    prefix = tokenizer_image_token(prefix_text(time_instruction(fs.duration, fs.times)), tokenizer, return_tensors="pt")
    suffix_ids = tokenizer(suffix_text(instruction("stvg", CAPTION))).input_ids
    suffix = Suffix(torch.tensor(suffix_ids), description_token_positions(suffix_ids, tokenizer, CAPTION))
    answer = generate_grounded(model, prefix, batch["images"], ["video"], [(96, 64)], [suffix], 0, -1)[0]
    full = torch.cat([prefix, suffix.ids])[None]
    text = torch.tensor([[len(prefix) + p for p in suffix.description]])
    with torch.no_grad():
        out = model(input_ids=full, images=batch["images"], modalities=["video"], image_sizes=[(96, 64)], grounding_text_index=text)
    assert torch.allclose(answer.boxes_cxcywh, out.pred_boxes[0], atol=1e-5)


def test_save_load_round_trip_reproduces_boxes_exactly(trained, tubes, sample, tmp_path_factory):
    from llava_st.hosts.llava_next.grounder import LlavaNextGrounder
    from llava_st.hosts.llava_next.loading import save_st_model

    tokenizer, model = trained[:2]
    path = save_st_model(model, tokenizer, tmp_path_factory.mktemp("ckpt") / "llava-st-qwen-tiny")
    loaded = LlavaNextGrounder.from_pretrained(path, frames=2)
    assert type(loaded.model).__name__ == "LlavaSTQwenForCausalLM"
    assert loaded.model.config.st_query_token_ids == model.config.st_query_token_ids
    assert loaded.ground(sample[0], [CAPTION, OTHER]) == tubes


def test_st_checkpoint_loads_in_upstream_load_pretrained_model_for_qa(trained, sample, tmp_path_factory):
    from llava.mm_utils import tokenizer_image_token
    from llava.model.builder import load_pretrained_model
    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    from llava_st.core.timespan import time_instruction
    from llava_st.data.video import read_video
    from llava_st.hosts.llava_next.grounder import prefix_text, suffix_text
    from llava_st.hosts.llava_next.loading import save_st_model

    tokenizer, model = trained[:2]
    path = save_st_model(model, tokenizer, tmp_path_factory.mktemp("ckpt") / "llava-st-qwen-tiny")
    up_tokenizer, up_model, processor, _ = load_pretrained_model(
        str(path), None, path.name, device_map="auto", torch_dtype="bfloat16", attn_implementation="sdpa"
    )
    assert type(up_model) is LlavaQwenForCausalLM
    reference = model.state_dict()
    rows = len(up_tokenizer)  # upstream resizes the embeddings to the tokenizer (query rows included)
    assert rows == len(tokenizer)
    for name, value in up_model.state_dict().items():
        expected = reference[name][:rows] if name in ("model.embed_tokens.weight", "lm_head.weight") else reference[name]
        assert torch.equal(value, expected.to(torch.bfloat16)), name
    frames, fs = read_video(sample[0], frames_upbound=2, force_sample=True)
    pixels = processor.preprocess(frames, return_tensors="pt")["pixel_values"].to(torch.bfloat16)
    prompt = prefix_text(time_instruction(fs.duration, fs.times)) + suffix_text("What moves?")
    ids = tokenizer_image_token(prompt, up_tokenizer, return_tensors="pt")[None]
    out = up_model.generate(ids, images=[pixels], modalities=["video"], image_sizes=[(96, 64)], max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1 and 1 <= out.shape[1] <= 4


def test_ground_image_gives_one_box_at_t0_and_answer_gives_text(grounder, sample, cache_dir):
    from PIL import Image

    path = cache_dir / "images" / "wide_800x300.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((torch.rand(300, 800, 3) * 255).byte().numpy()).save(path)
    (tube,) = grounder.ground_image(str(path), ["the left half"], max_new_tokens=4)
    assert tube["span"] == [0.0, 0.0] and tube["status"] == "ok"
    (frame,) = tube["frames"]
    x0, y0, x1, y1 = frame["box_xyxy"]
    assert frame["t"] == 0.0 and 0 <= x0 <= x1 <= 800 and 0 <= y0 <= y1 <= 300
    assert isinstance(grounder.answer(sample[0], "What moves?", max_new_tokens=3), str)


def test_missing_video_names_the_file(grounder):
    from llava_st.data.video import VideoReadError

    with pytest.raises(VideoReadError, match="nowhere.mp4"):
        grounder.ground("/nonexistent/nowhere.mp4", [CAPTION])


def test_upstream_generate_with_queries_matches_the_grounder(trained, grounder, sample):
    """The ST model's generate() (upstream's, with queries in place) and the shared-prefix greedy path
    of the grounder write the same answer."""
    from llava.mm_utils import tokenizer_image_token

    from llava_st.core.timespan import time_instruction
    from llava_st.data.templates import instruction
    from llava_st.data.video import read_video
    from llava_st.hosts.llava_next.grounder import prefix_text, suffix_text

    tokenizer, model, batch = trained[:3]
    _, fs = read_video(sample[0], frames_upbound=2, force_sample=True)
    prompt = prefix_text(time_instruction(fs.duration, fs.times)) + suffix_text(instruction("stvg", CAPTION))
    ids = tokenizer_image_token(prompt, tokenizer, return_tensors="pt")[None]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = model.generate(
        ids, images=batch["images"], modalities=["video"], image_sizes=[(96, 64)], max_new_tokens=16, do_sample=False,
        eos_token_id=end, pad_token_id=end,
    )
    text = tokenizer.decode(out[0], skip_special_tokens=True).strip()
    assert text == grounder.ground(sample[0], [CAPTION], max_new_tokens=16)[0]["raw_text"] == "From 0.0s to 1.9s."


def test_boxes_as_text_model_reads_its_boxes_from_the_answer(qwen_tokenizer, tiny_siglip_repo, sample):
    """Table 7 row 1 (st_query_mode "none"): no queries, no decoder; the grounder runs and a tube's boxes
    come from the answer text."""
    from llava_st.hosts.llava_next.grounder import LlavaNextGrounder
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, st_query_mode="none")
    grounder = LlavaNextGrounder(model, tokenizer, model.get_vision_tower().image_processor, frames=2)
    (tube,) = grounder.ground(sample[0], [CAPTION], max_new_tokens=2, task="vtg")
    assert set(tube) >= {"query", "span", "frames", "raw_text", "status"}
    answer = "From 0.0s to 1.9s. 0.0s: [0.10, 0.25, 0.35, 0.75]; 1.9s: [0.60, 0.25, 0.85, 0.75]."
    tube = grounder._tube(CAPTION, answer, [0.0, 1.9], None, tube["video"])
    assert tube["span"] == [0.0, 1.9] and [f["box_norm"] for f in tube["frames"]] == [[0.1, 0.25, 0.35, 0.75], [0.6, 0.25, 0.85, 0.75]]
