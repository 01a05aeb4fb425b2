"""`python -m llava_st.data.synth ...` that also writes the seconds its `run_pipeline` call took (stages,
the wait for the other ranks and rank 0's merge; not the process start or the model load) to
$LLAVA_ST_BENCH_TIMES/rank<R>.json ({"seconds", "cpu_s": the process's CPU seconds in the call (all its
threads), "main_cpu_s": those of the calling (main) thread alone, "start",
"end": wall-clock epoch seconds, so that the benchmark can take the span from the first rank's start to
the last rank's end; "stages": {name: seconds} of this rank's stages, StageReport.seconds): the entry point
bench_synth_ranks launches with torchrun."""

import json
import os
import sys
import time
from pathlib import Path

from llava_st.data import cli, synth
from llava_st.data.synth import shards

if __name__ == "__main__":
    pipeline, run_stage, stages = synth.run_pipeline, shards.run_stage, {}

    def timed_stage(*args, **kwargs):
        report = run_stage(*args, **kwargs)
        stages[report.name] = report.seconds
        return report

    def timed(*args, **kwargs):
        began, start, cpu, main = time.time(), time.perf_counter(), time.process_time(), time.thread_time()
        reports = pipeline(*args, **kwargs)
        seconds, cpu, main = time.perf_counter() - start, time.process_time() - cpu, time.thread_time() - main
        out = Path(os.environ["LLAVA_ST_BENCH_TIMES"]) / f"rank{os.environ.get('RANK', '0')}.json"
        out.write_text(json.dumps({"seconds": seconds, "cpu_s": cpu, "main_cpu_s": main, "start": began, "end": began + seconds,
                                   "stages": stages}))
        return reports

    synth.run_pipeline, shards.run_stage = timed, timed_stage
    sys.exit(cli.main(["synth", *sys.argv[1:]]))
