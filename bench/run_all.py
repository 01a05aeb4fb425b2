"""Run every benchmark (each in its own process), then regenerate the README's performance table.

`python -m bench.run_all [--quick] [--device cuda] [--threads N]` (`make bench`). A benchmark that fails is
reported and the others still run; the exit status is 1 if any failed.
"""

import argparse
import logging
import subprocess
import sys
import time

from . import readme_table
from .common import ROOT, setup_logging

BENCHMARKS = ("bench_metrics", "bench_dataset", "bench_multi_description", "bench_training", "bench_tube_latency")
logger = logging.getLogger("bench")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="benchmark module names to run (default: all)")
    args = p.parse_args(argv)
    setup_logging()
    failed = []
    for name in args.only or BENCHMARKS:
        cmd = [sys.executable, "-m", f"bench.{name}", "--device", args.device, "--threads", str(args.threads)] + (
            ["--quick"] if args.quick else [])
        start = time.time()
        logger.info("running %s", " ".join(cmd[1:]))
        if subprocess.run(cmd, cwd=ROOT).returncode:
            failed.append(name)
        logger.info("%s: %.0f s", name, time.time() - start)
    readme_table.main([])
    logger.info("README performance table regenerated%s", f"; failed: {failed}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
