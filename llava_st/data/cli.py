"""`llava-st data ...`: validate, convert, mix and synthesise Uni-STG data.

    llava-st data validate FILE [FILE ...] [--data-root DIR]
    llava-st data convert DATASET --out OUT.jsonl [--ann FILE] [dataset options]   (DATASET: see --help)
    llava-st data mix SOURCE [SOURCE ...] --out OUT.jsonl [--seed N] [--table1 [--scale S]] [--data-root DIR] [--strict]
    llava-st data synth analyze|annotate|refine|filter IN OUT [stage options]
    llava-st data synth run IN WORKDIR [analyzer and annotator options]

Every command streams its files, shows a progress bar, names each bad record (file, line or id, field) and
goes on with the others, and exits 1 when it rejected any, 2 when a file cannot be read at all (one line
naming it).
"""

import argparse
import inspect
import itertools
import logging
import os
import sys

logger = logging.getLogger(__name__)


def _validate(args) -> int:
    from .jsonl import DataFileError
    from .schema import iter_problems

    _safe_output()
    if args.data_root is not None and not os.path.isdir(args.data_root):
        print(f"llava-st data validate: --data-root {args.data_root}: not a directory", file=sys.stderr)
        return 2
    total = total_bad = shown = 0
    unreadable = []
    for path in args.files:
        records = bad = 0
        try:
            for problems in iter_problems(path, args.data_root, progress=True):
                records += 1
                if problems:
                    bad += 1
                    if shown < args.max_print:
                        shown += 1
                        for message in problems:
                            print(message)
        except DataFileError as exc:
            print(f"{exc} ({records} records read before it)" if records else str(exc))
            unreadable.append(path)
        print(f"{path}: {records} records, {bad} bad")
        total, total_bad = total + records, total_bad + bad
    if total_bad > shown:
        print(f"... {total_bad - shown} more bad records not shown (--max-print)")
    if len(args.files) > 1 or unreadable:
        print(f"total: {total} records, {total_bad} bad, {len(unreadable)} unreadable file(s) of {len(args.files)}")
    return 2 if unreadable else 1 if total_bad else 0


def _safe_output() -> None:
    """Never fail on printing a message: unencodable characters (lone surrogates) are escaped."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):  # not a TextIOWrapper (captured by a test harness)
            pass


def _convert(args) -> int:
    from .convert import CONVERTERS, Drops
    from .convert.common import ConvertInputError
    from .jsonl import JsonlWriter
    from .schema import validate_record

    fn, fixed = CONVERTERS[args.dataset]
    options = {
        "ann": args.ann,
        "vidor_dir": args.vidor_dir,
        "durations": args.durations,
        "refs": args.refs,
        "instances": args.instances,
        "split": args.split,
        "allow_pickle": args.allow_pickle,
        "video_prefix": args.prefix,
        "image_prefix": args.prefix,
        "seed": args.seed,
    }
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in options.items() if k in params and v is not None}
    missing = [
        k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs and k not in fixed
    ]
    if missing:
        print(
            f"convert {args.dataset}: missing {', '.join('--' + m.replace('_', '-') for m in missing)}", file=sys.stderr
        )
        return 2
    drops = Drops()
    invalid = 0
    records = fn(**kwargs, **fixed, drops=drops)
    try:  # the input files are read before the first record: an unreadable one leaves --out untouched
        first = next(records, None)
    except ConvertInputError as e:
        print(f"llava-st data convert: {e}", file=sys.stderr)
        return 2
    with JsonlWriter(args.out) as writer:
        for record in itertools.chain([] if first is None else [first], records):
            problems = validate_record(record)
            if problems:
                invalid += 1
                logger.warning("not written: %s", "; ".join(problems))
                continue
            writer.write(record)
    reasons = ", ".join(f"{r}: {n}" for r, n in drops.most_common()) or "none"
    print(f"{args.dataset}: wrote {writer.count} records to {args.out}; skipped: {reasons}; invalid: {invalid}")
    return 1 if invalid else 0


def _mix(args) -> int:
    from .mix import mix_files, parse_source

    _safe_output()
    if args.data_root is not None and not os.path.isdir(args.data_root):
        print(f"llava-st data mix: --data-root {args.data_root}: not a directory", file=sys.stderr)
        return 2
    sources = [parse_source(s) for s in args.sources]
    shown = [0]

    def problem(message: str) -> None:
        shown[0] += 1
        if shown[0] <= args.max_print:
            print(message)

    report = mix_files(sources, args.out, seed=args.seed, table1_scale=args.scale if args.table1 else None,
                       data_root=args.data_root, strict=args.strict, on_problem=problem)
    if shown[0] > args.max_print:
        print(f"... {shown[0] - args.max_print} more rejected records not shown (--max-print)")
    if report.file_errors:
        for error in report.file_errors:
            print(f"llava-st data mix: {error}", file=sys.stderr)
        print(f"llava-st data mix: {len(report.file_errors)} unreadable source(s); {args.out} not written", file=sys.stderr)
        return 2
    for path, n in report.taken.items():
        print(f"{path}: {n}")
    print(f"{args.out}: {report.written} records; {report.rejected} of {report.records} input records rejected")
    return 1 if report.rejected else 0


def _analyzer(args):
    from .synth import Analyzer, LocalChat, OpenAIChat
    from .synth.shards import rank_device

    if args.local_model:
        return Analyzer(LocalChat(args.local_model, device=rank_device(args.device)))
    if not (args.endpoint and args.model):
        raise SystemExit("the analyzer needs --endpoint URL and --model NAME, or --local-model PATH")
    chat = OpenAIChat(args.endpoint, args.model, api_key=os.environ.get(args.api_key_env), timeout=args.timeout,
                      retries=args.retries, backoff=args.backoff)
    return Analyzer(chat, concurrency=args.concurrency)


def _annotator(args):
    from .synth import Annotator
    from .synth.shards import rank_device

    if not args.detector:
        raise SystemExit("the annotator needs --detector PATH (a local GroundingDINO checkpoint directory)")
    return Annotator(
        args.detector,
        data_root=args.data_root,
        sample_fps=args.fps,
        box_threshold=args.box_threshold,
        device=rank_device(args.device),
    )


def _synth(args) -> int:
    from .jsonl import iter_records
    from .synth import Filter, Refiner, run_pipeline
    from .synth.shards import dist_info, init_distributed, run_sharded

    _safe_output()
    next(iter_records(args.input), None)  # an unreadable input: one line naming it (DataFileError), before any model loads
    if args.stage == "annotate" or args.stage == "run":
        if not os.path.isdir(args.data_root):
            print(f"llava-st data synth: --data-root {args.data_root}: not a directory", file=sys.stderr)
            return 2
    rank, world_size = dist_info(args.rank, args.world_size)
    started = init_distributed(world_size)
    refiner = lambda: Refiner(args.min_seconds, args.max_seconds)  # noqa: E731
    filt = lambda: Filter(args.max_boxes, seed=args.seed)  # noqa: E731
    if args.stage == "run":
        stages = [
            ("analyze", _analyzer(args)),
            ("annotate", _annotator(args)),
            ("refine", refiner()),
            ("filter", filt()),
        ]
        reports = run_pipeline(stages, args.input, args.output, rank=rank, world_size=world_size)
    else:
        make = {
            "analyze": lambda: _analyzer(args),
            "annotate": lambda: _annotator(args),
            "refine": refiner,
            "filter": filt,
        }
        reports = run_sharded([(args.stage, make[args.stage]())], args.input, [args.output], rank, world_size)
    if started:
        import torch.distributed as dist

        dist.destroy_process_group()
    for report in reports or ():  # None: a rank other than 0, or shards left to merge
        print(report.summary())
    if not reports:
        return 0
    rejected = sum(r.rejected for r in reports)
    print(f"synth: {rejected} input record(s) rejected as bad input (named above; see the .dropped.jsonl files)")
    return 1 if rejected else 0


def build_parser() -> argparse.ArgumentParser:
    from .convert import CONVERTERS

    parser = argparse.ArgumentParser(prog="llava-st data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="report every bad record by id and field")
    p.add_argument("files", nargs="+", metavar="FILE", help="Uni-STG JSONL or JSON list file(s)")
    p.add_argument("--data-root", help="check that media paths stay inside this directory")
    p.add_argument("--max-print", type=int, default=1000, help="print the problems of at most this many records")
    p.set_defaults(func=_validate)

    p = sub.add_parser("convert", help="official annotations -> Uni-STG JSONL")
    p.add_argument("dataset", choices=sorted(CONVERTERS))
    p.add_argument("--out", required=True)
    p.add_argument("--ann", help="the official annotation file (all datasets but RefCOCO*)")
    p.add_argument("--vidor-dir", help="vidstg: directory of VidOR per-video annotation JSON files")
    p.add_argument(
        "--durations", help="charades-sta: Charades_v1_{split}.csv; didemo (optional): JSON {video: seconds}"
    )
    p.add_argument("--refs", help="refcoco*: refs(<splitBy>).p, or a JSON export of it")
    p.add_argument("--instances", help="refcoco*: instances.json")
    p.add_argument("--split", help="refcoco*: keep only this split (train/val/testA/testB/test)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="refcoco*: read the official pickle (runs code from it: trusted files only)",
    )
    p.add_argument("--prefix", default="", help="prepended to every video/image path (relative to the data root)")
    p.add_argument("--seed", type=int, default=0, help="seed of the instruction-template draw")
    p.set_defaults(func=_convert)

    p = sub.add_parser("mix", help="a shuffled training mixture from several files")
    p.add_argument("sources", nargs="+", help="PATH, PATH@COUNT (int) or PATH@RATIO (float fraction of the file)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--table1",
        action="store_true",
        help="the paper's Table 1 counts per task (split over each task's files by size)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="with --table1: multiply every count by this")
    p.add_argument("--data-root", help="media paths must stay inside this directory (links followed)")
    p.add_argument("--strict", action="store_true", help="also refuse records lacking a field the schema requires")
    p.add_argument("--max-print", type=int, default=1000, help="print at most this many rejected records")
    p.set_defaults(func=_mix)

    p = sub.add_parser("synth", help="the STVG synthesis pipeline (Analyzer, Annotator, Refiner, Filter)")
    p.add_argument("stage", choices=["analyze", "annotate", "refine", "filter", "run"])
    p.add_argument("input", help="input JSONL (records with video, caption, span)")
    p.add_argument("output", help="output JSONL of the stage; for `run`, a work directory")
    p.add_argument("--endpoint", help="analyzer: base URL of an OpenAI-compatible API (…/v1)")
    p.add_argument("--model", help="analyzer: model name at the endpoint")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="analyzer: environment variable holding the API key")
    p.add_argument("--concurrency", type=int, default=1, help="analyzer: requests in flight at the endpoint")
    p.add_argument("--retries", type=int, default=5,
                   help="analyzer: retries of a request answered 429/5xx, timed out or cut (exponential backoff)")
    p.add_argument("--backoff", type=float, default=1.0, help="analyzer: first retry wait in seconds (doubles each time)")
    p.add_argument("--timeout", type=float, default=120.0, help="analyzer: seconds one request may take")
    p.add_argument("--local-model", help="analyzer: a local transformers causal LM instead of an endpoint")
    p.add_argument("--detector", help="annotator: local GroundingDINO checkpoint directory")
    p.add_argument("--data-root", default=".", help="annotator: directory video paths are relative to")
    p.add_argument("--fps", type=float, default=2.0, help="annotator: frames per second sampled inside the span")
    p.add_argument("--box-threshold", type=float, default=0.3)
    p.add_argument("--device", default="cpu", help="annotator (and --local-model): cuda means cuda:LOCAL_RANK")
    p.add_argument("--rank", type=int, help="shard index (default: torchrun's RANK)")
    p.add_argument("--world-size", type=int, help="number of shards (default: torchrun's WORLD_SIZE)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="refiner: drop shorter spans")
    p.add_argument("--max-seconds", type=float, default=120.0, help="refiner: drop longer spans")
    p.add_argument("--max-boxes", type=int, default=3, help="filter: frames with more boxes are complex")
    p.add_argument("--seed", type=int, default=0, help="filter: seed of the instruction-template draw")
    p.set_defaults(func=_synth)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError) as e:
        print(f"llava-st data {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
