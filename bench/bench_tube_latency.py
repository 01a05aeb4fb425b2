"""Tube latency (paper §3.1.5) against a plain short answer and against boxes written as text.

On the LLaVA-NeXT host (mid-size model, LLaVA-Video's 210 tokens per frame), for 16, 32 and 64 frames,
every variant runs `generate_grounded` (the host's generation) on the same video prompt:
  prefix:    ST on, only the shared video prefix (vision features, queries, LLM prefill);
  plain:     ST off (upstream's model), a question, a short answer of as many tokens as a span answer;
  tube:      ST on, the STVG instruction, the span answer ("From 3.2s to 7.8s.") + the decoder's boxes
             for every frame + tube assembly;
  text_tube: ST off, the STVG instruction, the "boxes as text" answer (Table 7 row 1) with one box per
             sampled frame (the span covers the whole clip), parsed into a tube.
Answer lengths are forced (no early stop) to the token counts of those answers, so a random model
does the work a trained one would. The vision tower is run once per frame count and its time reported
separately (it is the same for every variant; leaving it out makes every ratio stricter).
"""

import sys

import torch

from . import common

FRAME_COUNTS = (16, 32, 64)
QUICK_FRAME_COUNTS = (4,)
DESCRIPTION = "the man in the red jacket who opens the door"
QUESTION = "What is the man in the red jacket doing?"


def video_times(frames: int):
    """Sampled frame times (seconds) of a 60 s, 30 fps video, upstream's forced uniform sampling."""
    from llava_st.data.video import sample_frames

    return sample_frames(1800, 30.0, frames_upbound=frames, force_sample=True)


def answers(times):
    """(span answer, boxes-as-text answer with a box on every sampled frame) for frame `times` (s)."""
    from llava_st.core.boxtext import format_boxes_text
    from llava_st.core.timespan import format_span

    start, end = float(times[0]), float(times[-1])
    boxes = [(float(t), [0.1 + 0.005 * i, 0.2, 0.45 + 0.005 * i, 0.8]) for i, t in enumerate(times)]
    return format_span(start, end), format_boxes_text(start, end, boxes)


def run(args) -> int:
    from llava.mm_utils import tokenizer_image_token

    from llava_st.core.boxtext import parse_boxes_text
    from llava_st.core.layout import description_token_positions
    from llava_st.core.timespan import time_instruction
    from llava_st.core.tube import assemble_tube
    from llava_st.data.templates import instruction
    from llava_st.hosts.llava_next.generation import Suffix, generate_grounded
    from llava_st.hosts.llava_next.grounder import prefix_text, suffix_text

    device = args.device
    frame_counts = QUICK_FRAME_COUNTS if args.quick else FRAME_COUNTS
    tok, st_model = common.mid_llava_st(num_queries=max(frame_counts), device=device)
    _, plain_model = common.mid_llava_st(num_queries=max(frame_counts), query_mode="none", device=device)
    common.share_weights(st_model, plain_model)
    vision = common.VisionCache(st_model, plain_model)
    record = common.Record("tube_latency", args, "llava_next", {
        "llm": common.MID_LLM,
        "frame_counts": list(frame_counts),
        "tokens_per_frame": common.TOKENS_PER_FRAME,
        "vision": "tiny SigLIP (hidden 1152, 384 px, 729 patches), cached after one run",
        "text_tube_repeats": min(args.text_repeats, args.repeats),
    })

    def suffix(question, description=None):
        ids = tok(suffix_text(question)).input_ids
        return Suffix(torch.tensor(ids), description_token_positions(ids, tok, description) if description else [])

    decoder_times = common.module_timer(st_model.space_decoder)
    stvg_suffix = suffix(instruction("stvg", DESCRIPTION), DESCRIPTION)
    plain_suffix = suffix(QUESTION)
    for n, frames in enumerate(frame_counts):
        sample = video_times(frames)
        times = sample.times.tolist()
        info = {"path": "bench.mp4", "width": 640, "height": 360, "duration": sample.duration, "fps": sample.fps}
        prefix = tokenizer_image_token(prefix_text(time_instruction(sample.duration, sample.times)), tok, return_tensors="pt")
        pixels = torch.randn(frames, 3, 384, 384, device=device)
        span_text, boxes_text = answers(times)
        n_span = len(tok(span_text).input_ids) + 1  # + the end token
        n_text = len(tok(boxes_text).input_ids) + 1

        # Timed inside this iteration: the loop's values are bound explicitly (default arguments).
        def generate(model, suffixes, tokens, prefix=prefix, pixels=pixels):
            return generate_grounded(model, prefix, [pixels], ["video"], [(640, 360)], suffixes, tokens, eos_token_id=-1)

        def tube(generate=generate, n_span=n_span, span_text=span_text, times=times, info=info):
            answer = generate(st_model, [stvg_suffix], n_span)[0]
            return assemble_tube(DESCRIPTION, span_text, times, answer.boxes_cxcywh, info)

        def text_tube(generate=generate, n_text=n_text, boxes_text=boxes_text, times=times, info=info):
            generate(plain_model, [stvg_suffix], n_text)
            _, parsed = parse_boxes_text(boxes_text)
            return assemble_tube(DESCRIPTION, boxes_text, times, None, info), parsed

        vision_s = vision.prime(pixels, device)
        common.logger.info("%d frames: prefix %d tokens, span answer %d tokens, boxes-as-text answer %d tokens",
                           frames, prefix.numel(), n_span, n_text)
        decoder_times.clear()
        variants = {
            "prefix": lambda generate=generate: generate(st_model, [], 0),
            "plain": lambda generate=generate, n_span=n_span: generate(plain_model, [plain_suffix], n_span),
            "tube": tube,
        }
        text_repeats = min(args.text_repeats, args.repeats)
        if text_repeats == args.repeats:
            variants["text_tube"] = text_tube
        t = common.time_interleaved(variants, args.repeats, device, warmup=1 if n == 0 else 0)
        if "text_tube" not in t:  # the slow baseline, fewer repeats
            t["text_tube"] = common.time_it(text_tube, text_repeats, device, warmup=0)
        med = {k: common.median(v) for k, v in t.items()}
        tube_after = med["tube"] - med["prefix"]
        text_after = med["text_tube"] - med["prefix"]
        result = {
            "prompt_tokens_before_splice": int(prefix.numel()),
            "video_tokens": frames * common.TOKENS_PER_FRAME,
            "queries": frames,
            "answer_tokens": {"span": n_span, "plain": n_span, "boxes_as_text": n_text},
            "vision_tower_s": round(vision_s, 4),
            "space_decoder_median_s": round(common.median(decoder_times), 5),
            "times_s": {k: [round(x, 4) for x in v] for k, v in t.items()},
            "median_s": {k: round(v, 4) for k, v in med.items()},
            "tube_over_plain": round(med["tube"] / med["plain"], 4),
            "text_tube_over_tube": round(med["text_tube"] / med["tube"], 4),
            "tube_over_plain_with_vision": round((med["tube"] + vision_s) / (med["plain"] + vision_s), 4),
            "text_tube_over_tube_with_vision": round((med["text_tube"] + vision_s) / (med["tube"] + vision_s), 4),
            "after_prefix_s": {"tube": round(tube_after, 4), "text_tube": round(text_after, 4)},
            "text_tube_over_tube_after_prefix": round(text_after / max(tube_after, 1e-9), 2),
        }
        if frames == frame_counts[-1] and result["text_tube_over_tube"] < 10:
            result["profile_tube"] = common.top_ops(tube)
        record.data["results"][f"{frames}_frames"] = result
        common.logger.info("%d frames: %s", frames, {k: result[k] for k in ("median_s", "tube_over_plain", "text_tube_over_tube")})
    last = record.data["results"][f"{frame_counts[-1]}_frames"]
    label = f"{frame_counts[-1]} frames"
    record.data["targets"] = [
        common.target(f"tube / plain answer latency, {label}", last["tube_over_plain"], 1.15, "<=", "x"),
        common.target(f"text-coordinate tube / tube latency, {label}", last["text_tube_over_tube"], 10, ">=", "x"),
    ]
    record.data["notes"].append(
        "Ratios are of LLM-side latency (prefill + answer + decoder), the vision tower excluded (its time is "
        "vision_tower_s; *_with_vision adds it to both sides). after_prefix_s is a variant's median minus the "
        "prefix-only median (ST model; the ST-off prefix is shorter by one query per frame): the part after the shared video. "
        "profile_tube (when the text-coordinate target is missed): torch.profiler's top operators of one tube call."
    )
    record.write()
    return 0


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0], repeats=3)
    p.add_argument("--text-repeats", type=int, default=2, help="repeats of the slow boxes-as-text variant (at most --repeats)")
    args, code = common.start(p, argv)
    if args is None:
        return code
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
