"""Served Analyzer throughput: 16 requests in flight vs 1, against a loopback OpenAI-compatible server.

The server (llava_st.testing.openai_server, real HTTP on 127.0.0.1) answers every chat-completions
request after a fixed latency (200 ms: about what Qwen2.5-72B on vLLM takes for the Analyzer's short
JSON answer); the Analyzer stage (data.synth: OpenAIChat + Analyzer through the stage runner, records
written in input order) analyses the same captions with `--concurrency 16` and 1, the two variants
alternating repeat by repeat. Throughput is records per second of the whole stage run (file reading,
HTTP, parsing, writing). The ratio of each repeat is reported with its spread.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from . import common


def stage_seconds(url: str, src: Path, out: Path, concurrency: int) -> float:
    from llava_st.data.synth import Analyzer, OpenAIChat, run_stage

    analyzer = Analyzer(OpenAIChat(url, "Qwen/Qwen2.5-72B-Instruct", timeout=30, retries=0), concurrency=concurrency)
    start = time.perf_counter()
    report = run_stage(analyzer, src, out, name=f"analyze x{concurrency}", progress=False)
    seconds = time.perf_counter() - start
    if report.kept != common_count(src):
        raise RuntimeError(f"analyzer kept {report.kept} records: {report.summary()}")
    return seconds


def common_count(path: Path) -> int:
    return sum(1 for line in open(path) if line.strip())


def run(args) -> int:
    from llava_st.testing.openai_server import LoopbackChatServer

    latency = 0.05 if args.quick else 0.2
    records = 16 if args.quick else 96
    wide = 16

    def answer(body):
        caption = body["messages"][-1]["content"]
        return json.dumps({"subject": "the person", "objects": [caption.split()[-1].strip('"')]})

    record = common.Record("analyzer", args, "synthesis", {
        "server": "llava_st.testing.openai_server on 127.0.0.1 (ThreadingHTTPServer, one thread per request)",
        "latency_s": latency, "records": records, "in_flight": [1, wide], "client": "urllib, one connection per request"})
    times = {1: [], wide: []}
    with tempfile.TemporaryDirectory() as tmp, LoopbackChatServer(answer, latency=latency, max_requests=10**6) as server:
        src = Path(tmp) / "captions.jsonl"
        src.write_text("".join(json.dumps({"id": f"c{i}", "caption": f"a person picks up the cup {i}"}) + "\n"
                               for i in range(records)))
        stage_seconds(server.url, src, Path(tmp) / "warmup.jsonl", wide)
        for rep in range(args.repeats):
            for concurrency in (wide, 1):
                times[concurrency].append(stage_seconds(server.url, src, Path(tmp) / f"out{rep}_{concurrency}.jsonl", concurrency))
        max_in_flight = server.max_in_flight
    ratios = [one / many for one, many in zip(times[1], times[wide])]
    med = {c: common.median(v) for c, v in times.items()}
    ratio = med[1] / med[wide]
    record.data["results"] = {
        "times_s": {str(c): [round(x, 4) for x in v] for c, v in times.items()},
        "median_s": {str(c): round(v, 4) for c, v in med.items()},
        "records_per_s": {str(c): round(records / v, 3) for c, v in med.items()},
        "ideal_ratio": wide,
        "server_max_in_flight": max_in_flight,
        "ratio": round(ratio, 3),
        "stability": common.stability(ratios),
    }
    record.data["targets"] = [common.target(f"Analyzer records/s, {wide} in flight / 1 ({latency * 1000:.0f} ms server latency)",
                                            ratio, 10, ">=", "x")]
    record.data["notes"].append(
        f"Analyzer: {wide} in flight / 1 = {ratio:.1f}x (ideal {wide}x); per-repeat ratios "
        f"{', '.join(f'{r:.1f}' for r in ratios)} ({record.data['results']['stability']['spread_pct']:.0f}% spread).")
    record.write()
    return 0


def main(argv=None) -> int:
    args, code = common.start(common.parser(__doc__.splitlines()[0], repeats=3), argv)
    if args is None:
        return code
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
