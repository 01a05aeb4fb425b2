"""`llava-st eval stvg|vtg|rec`: evaluate a checkpoint on converted (Uni-STG) test files.

    llava-st eval stvg --benchmark hcstvg-v1 --checkpoint CKPT --data test=hcstvg_v1_test.jsonl \\
        --data-root /data/hcstvg --out runs/eval/hcstvg-v1 [--frames 64] [--viz 5]
    torchrun --nproc_per_node 8 -m llava_st.eval.cli vtg --benchmark charades-sta ...   (sharded)
    llava-st eval rec --benchmark refcoco --data val=val.jsonl --data testA=testA.jsonl ... --merge-only

Writes predictions.rank*.jsonl (appended as it goes; run again to resume), metrics.json and table.md
into --out. See llava_st.eval.drivers for the layout.
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import metrics as M
from .drivers import BENCHMARKS, dist_info, evaluate, finish, load_records

log = logging.getLogger(__name__)


def _split_files(items, default_split: str) -> dict:
    files = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = (default_split if len(items) == 1 else Path(item).stem), item
        files[name] = path
    return files


def _init_distributed(world_size: int):
    """Start a process group under torchrun so that rank 0 can wait for the other shards."""
    import torch
    import torch.distributed as dist

    if world_size > 1 and dist.is_available() and not dist.is_initialized() and "MASTER_ADDR" in os.environ:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-st eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=("stvg", "vtg", "rec"))
    parser.add_argument("--benchmark", help=f"one of {sorted(BENCHMARKS)} (default: the task's generic one)")
    parser.add_argument("--checkpoint", help="checkpoint directory (either host; see llava_st.api.load_grounder)")
    parser.add_argument("--data", action="append", required=True, metavar="[SPLIT=]FILE",
                        help="Uni-STG .json/.jsonl test file; repeat per split")
    parser.add_argument("--data-root", default=".", help="directory the records' video/image paths are relative to")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--frames", type=int, help="frames sampled per video (default: the checkpoint's)")
    parser.add_argument("--max-new-tokens", type=int, help="answer length limit in tokens (default: the grounder's)")
    parser.add_argument("--convention", choices=sorted(M.CONVENTIONS), help="STVG frame convention (default: the benchmark's)")
    parser.add_argument("--viz", type=int, default=0, metavar="N", help="draw the first N samples into OUT/viz")
    parser.add_argument("--device", help="default: cuda:LOCAL_RANK when available, else cpu")
    parser.add_argument("--rank", type=int, help="shard index (default: torchrun's RANK)")
    parser.add_argument("--world-size", type=int, help="number of shards (default: torchrun's WORLD_SIZE)")
    parser.add_argument("--merge-only", action="store_true", help="predict nothing: merge the shards in OUT and score")
    parser.add_argument("--model-name", default="llava_st", help="row label in table.md")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except (OSError, ValueError) as exc:  # an unreadable test file, a checkpoint that does not load, ...
        print(f"llava-st eval: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    benchmark = BENCHMARKS[args.benchmark or args.task]
    if benchmark.task != args.task:
        raise SystemExit(f"benchmark {benchmark.name!r} is a {benchmark.task} benchmark, not {args.task}")
    split_files = _split_files(args.data, benchmark.splits[0])
    convention = M.CONVENTIONS[args.convention] if args.convention else None
    if args.merge_only:
        samples = [(split, r) for split, path in split_files.items() for r in load_records(path)]
        result = finish(benchmark, samples, args.data_root, args.out, convention, args.viz, args.model_name)
    else:
        if not args.checkpoint:
            raise SystemExit("--checkpoint is required (or --merge-only)")
        from ..api import check_frames_for, checkpoint_config, load_grounder

        if args.frames is not None:  # before any process group, model or video
            check_frames_for(checkpoint_config(args.checkpoint), args.frames)
        rank, world_size = dist_info(args.rank, args.world_size)
        started = _init_distributed(world_size)

        device = args.device or _default_device()
        options = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
        grounder = load_grounder(args.checkpoint, device=device, **options)
        result = evaluate(grounder, benchmark, split_files, args.data_root, args.out, rank, world_size, args.frames, convention, args.viz,
                          model_name=args.model_name)
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
    if result is not None:
        print((Path(args.out) / "table.md").read_text())
        log.info("metrics: %s", json.dumps(result["splits"]))
    return 0


def _default_device() -> str:
    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    sys.exit(main())
