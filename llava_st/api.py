"""The Python API and `llava-st ground`.

    from llava_st.api import load_grounder
    grounder = load_grounder("path/to/checkpoint")            # host detected from config.json
    tubes = grounder.ground("clip.mp4", ["the man in red", "the dog"])   # one tube per description
    tubes = grounder.ground_image("photo.jpg", ["the left cup"])         # one box, t = 0
    text = grounder.answer("clip.mp4", "What happens?")

Every grounder implements `Grounder` (core/grounder.py, re-exported here): `ground`, `ground_image`,
`answer`; the descriptions of one call are answered in one batch on the shared video prefix
(core/generation.py). Tubes follow core/tube.py: {"query", "span": [t_s, t_e] seconds, "frames": [{"t", "box_xyxy" (pixels
of the original video), "box_norm"}], "video", "raw_text", "status"}.

    llava-st ground --model PATH --video FILE --query TEXT [--query ...] [--frames N]
                    [--out tube.json|tube.csv] [--viz out.mp4] [--device cpu]

Bad input ends in one error line and exit code 2, before any model or video is loaded where it can be
checked: --frames outside [1, the checkpoint's number of video queries] (core.config.check_frames), a
device that is not there, --out/--viz that is a directory or cannot be written, and every checkpoint
problem (hosts.checkpoint: no, empty, truncated or pickle-only weights, missing tokenizer or
preprocessor_config.json, a config.json that is not an object, weights of the other host).
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from .core.grounder import Grounder, Tube
from .core.tube import tubes_to_csv, tubes_to_json
from .hosts.checkpoint import CheckpointError, read_config, short

logger = logging.getLogger(__name__)

__all__ = ["Grounder", "Tube", "load_grounder", "NotAnSTCheckpoint", "checkpoint_config", "checkpoint_model_type", "check_device",
           "check_frames_for", "main"]

HF_MODEL_TYPE = "llava_st_onevision"
LLAVA_NEXT_MODEL_TYPE = "llava_st_qwen"


class NotAnSTCheckpoint(CheckpointError):
    """The path is not a llava_st checkpoint of either host."""


def checkpoint_config(path) -> dict:
    """The checkpoint directory's config.json; NotAnSTCheckpoint when there is none or it is not an object."""
    try:
        return read_config(path)
    except CheckpointError as exc:
        raise NotAnSTCheckpoint(str(exc)) from None


def checkpoint_model_type(path) -> str:
    """model_type of the checkpoint directory's config.json; NotAnSTCheckpoint when it has none."""
    model_type = checkpoint_config(path).get("model_type", "")
    return model_type if isinstance(model_type, str) else ""


def check_device(device) -> str:
    """`device` when torch can use it here; ValueError naming it otherwise (an unknown name, CUDA or MPS
    that this machine does not have, a GPU index beyond the count)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a torch device (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA GPU is available here (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here (use --device cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r}: llava_st runs on cpu, cuda or mps")
    return device


def load_grounder(path, device: str = "cpu", **options) -> Grounder:
    """A Grounder for an ST checkpoint of either host (by config.json's model_type): the transformers
    host ("llava_st_onevision") or the LLaVA-NeXT host ("llava_st_qwen", needs upstream `llava`).
    options go to the grounder (frames, max_new_tokens, torch_dtype, ...). Raises NotAnSTCheckpoint
    for a directory that is not one, CheckpointError for one that cannot be loaded (hosts.checkpoint),
    ValueError for a device that is not there or frames out of range."""
    config = checkpoint_config(path)
    model_type = config.get("model_type", "")
    check_device(device)
    if options.get("frames") is not None:
        check_frames_for(config, options["frames"])
    if model_type == HF_MODEL_TYPE:
        from .hosts.hf import load_st_model
        from .hosts.hf.grounder import HFGrounder

        _, model, processor = load_st_model(path, device=device, torch_dtype=options.pop("torch_dtype", None))
        return HFGrounder(model, processor, **options)
    if model_type == LLAVA_NEXT_MODEL_TYPE:
        try:
            from .hosts.llava_next.grounder import LlavaNextGrounder  # needs upstream `llava`
        except ImportError as exc:
            needs = "which needs upstream LLaVA-NeXT (package `llava`)"
            raise CheckpointError(f"{path} is a {LLAVA_NEXT_MODEL_TYPE} checkpoint, {needs}: {short(exc)}") from exc
        return LlavaNextGrounder.from_pretrained(path, device=device, **options)
    shown = model_type if isinstance(model_type, str) and model_type else "untyped"
    raise NotAnSTCheckpoint(
        f"{path} holds a {shown[:80]!r} model, not a llava_st model "
        f"({HF_MODEL_TYPE!r} or {LLAVA_NEXT_MODEL_TYPE!r}); convert and train one first"
    )


def check_frames_for(config: dict, frames) -> int:
    """core.config.check_frames with the checkpoint's st_num_queries and st_query_mode (from config.json,
    so before the model is loaded)."""
    from .core.config import STConfig, check_frames

    num_queries, mode = config.get("st_num_queries", STConfig.num_queries), config.get("st_query_mode", STConfig.query_mode)
    if isinstance(num_queries, bool) or not isinstance(num_queries, int) or num_queries < 1:
        raise CheckpointError(f"config.json: st_num_queries must be a positive integer, got {str(num_queries)[:40]}")
    return check_frames(frames, num_queries, mode)


def _check_output(path, what: str) -> None:
    """ValueError when `path` (an output file) is a directory or cannot be written, before any work: its
    directory is created and a scratch file written there."""
    import tempfile

    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{what} {path}: is a directory (give a file name)")
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{what} {path}: not writable (permission denied)")
    existing = next((p for p in target.absolute().parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"{what} {path}: {existing} is a file, not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot write there: {exc.strerror or exc}") from None


def _check_arguments(args) -> None:
    """Everything about the arguments that can be checked before a model is loaded (ValueError)."""
    check_device(args.device)
    for what, path in (("--out", args.out), ("--viz", args.viz)):
        if path:
            _check_output(path, what)
    config = checkpoint_config(args.model)
    if args.frames is not None:
        try:
            check_frames_for(config, args.frames)
        except ValueError as exc:
            raise ValueError(f"--frames: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llava-st ground", description="Ground text descriptions in a video (or an image) as tubes.")
    p.add_argument("--model", required=True, help="checkpoint directory (either host)")
    media = p.add_mutually_exclusive_group(required=True)
    media.add_argument("--video", help="video file")
    media.add_argument("--image", help="image file (REC: one box per description)")
    p.add_argument("--query", action="append", required=True, help="a description; repeat for several")
    p.add_argument(
        "--frames", type=int, default=None,
        help="frames to sample, from 1 to the checkpoint's number of video queries (default: that number, at most 64)",
    )
    p.add_argument("--out", help="write the tubes to .json or .csv (query_id,time_ms,x0,y0,x1,y1); default: JSON on stdout")
    p.add_argument("--viz", help="write an mp4 of the video with the tubes drawn")
    p.add_argument("--device", default="cpu")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .data.video import VideoReadError

    try:
        _check_arguments(args)
        grounder = load_grounder(args.model, device=args.device)
        if args.video:
            tubes = grounder.ground(args.video, args.query, frames=args.frames)
        else:
            tubes = grounder.ground_image(args.image, args.query)
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
    except (CheckpointError, VideoReadError, OSError, ValueError) as exc:  # OSError: FileNotFoundError, writing --out
        print(f"llava-st ground: error: {exc}", file=sys.stderr)
        return 2
    for n, tube in enumerate(tubes):
        if tube["status"] != "ok":
            logger.warning("query %d (%r): %s", n, tube["query"], tube["status"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
