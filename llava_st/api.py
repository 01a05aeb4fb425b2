"""The Python API and `llava-st ground`.

    from llava_st.api import load_grounder
    grounder = load_grounder("path/to/checkpoint")            # host detected from config.json
    tubes = grounder.ground("clip.mp4", ["the man in red", "the dog"])   # one tube per description
    tubes = grounder.ground_image("photo.jpg", ["the left cup"])         # one box, t = 0
    text = grounder.answer("clip.mp4", "What happens?")

Tubes follow core/tube.py: {"query", "span": [t_s, t_e] seconds, "frames": [{"t", "box_xyxy" (pixels
of the original video), "box_norm"}], "video", "raw_text", "status"}.

    llava-st ground --model PATH --video FILE --query TEXT [--query ...] [--frames N]
                    [--out tube.json|tube.csv] [--viz out.mp4] [--device cpu]
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .core.tube import tubes_to_csv, tubes_to_json

logger = logging.getLogger(__name__)

HF_MODEL_TYPE = "llava_st_onevision"
LLAVA_NEXT_MODEL_TYPE = "llava_st_qwen"


class NotAnSTCheckpoint(ValueError):
    """The path is not a llava_st checkpoint of either host."""


def checkpoint_model_type(path) -> str:
    """model_type of the checkpoint directory's config.json; NotAnSTCheckpoint when it has none."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise NotAnSTCheckpoint(f"{path} is not a model checkpoint: no config.json there")
    try:
        return json.loads(cfg.read_text()).get("model_type", "")
    except json.JSONDecodeError as exc:
        raise NotAnSTCheckpoint(f"{cfg} is not valid JSON: {exc}") from exc


def load_grounder(path, device: str = "cpu", **options):
    """A Grounder for an ST checkpoint of either host (by config.json's model_type): the transformers
    host ("llava_st_onevision") or the LLaVA-NeXT host ("llava_st_qwen", needs upstream `llava`).
    options go to the grounder (frames, max_new_tokens, torch_dtype, ...). Raises NotAnSTCheckpoint
    otherwise."""
    model_type = checkpoint_model_type(path)
    if model_type == HF_MODEL_TYPE:
        from .hosts.hf import load_st
        from .hosts.hf.grounder import HFGrounder

        model, processor = load_st(path, device=device, dtype=options.pop("torch_dtype", None))
        return HFGrounder(model, processor, **options)
    if model_type == LLAVA_NEXT_MODEL_TYPE:
        from .hosts.llava_next.grounder import LlavaNextGrounder  # needs upstream `llava`

        return LlavaNextGrounder.from_pretrained(path, device=device, **options)
    raise NotAnSTCheckpoint(
        f"{path} holds a {model_type or 'untyped'!r} model, not a llava_st model "
        f"({HF_MODEL_TYPE!r} or {LLAVA_NEXT_MODEL_TYPE!r}); convert and train one first"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llava-st ground", description="Ground text descriptions in a video (or an image) as tubes.")
    p.add_argument("--model", required=True, help="checkpoint directory (either host)")
    media = p.add_mutually_exclusive_group(required=True)
    media.add_argument("--video", help="video file")
    media.add_argument("--image", help="image file (REC: one box per description)")
    p.add_argument("--query", action="append", required=True, help="a description; repeat for several")
    p.add_argument("--frames", type=int, default=None, help="frames to sample (default: the model's number of queries, at most 64)")
    p.add_argument("--out", help="write the tubes to .json or .csv (query_id,time_ms,x0,y0,x1,y1); default: JSON on stdout")
    p.add_argument("--viz", help="write an mp4 of the video with the tubes drawn")
    p.add_argument("--device", default="cpu")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .data.video import VideoReadError

    try:
        grounder = load_grounder(args.model, device=args.device)
        if args.video:
            tubes = grounder.ground(args.video, args.query, frames=args.frames)
        else:
            tubes = grounder.ground_image(args.image, args.query)
    except (NotAnSTCheckpoint, VideoReadError, FileNotFoundError, ValueError) as exc:
        print(f"llava-st ground: error: {exc}", file=sys.stderr)
        return 2
    text = tubes_to_csv(tubes) if args.out and args.out.endswith(".csv") else tubes_to_json(tubes)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        Path(args.out).write_text(text)
        logger.info("wrote %d tube(s) to %s", len(tubes), args.out)
    else:
        print(text)
    if args.viz:
        from .eval.viz import draw_image, draw_tubes_video

        draw = draw_tubes_video if args.video else draw_image
        logger.info("wrote %s", draw(args.video or args.image, tubes, args.viz))
    for n, tube in enumerate(tubes):
        if tube["status"] != "ok":
            logger.warning("query %d (%r): %s", n, tube["query"], tube["status"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
