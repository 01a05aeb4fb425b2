"""Sharded synthesis on torchrun (2 CPU ranks, the tiny offline GroundingDINO, the Analyzer on a loopback
server): a rank killed mid-run, a rerun, and the merged files equal one uninterrupted process's, byte for
byte; the merge itself on hand-made shards (input order, duplicate ids, drop counts summed)."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llava_st.data.synth import Dropped, Refiner, run_pipeline
from llava_st.data.synth.shards import rank_device, shard_path
from llava_st.data.synth.stage import dropped_path
from llava_st.testing.grounding_dino import build_tiny_grounding_dino
from llava_st.testing.openai_server import LoopbackChatServer

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["1_analyze", "2_annotate", "3_refine", "4_filter"]


def test_shard_names_and_device(monkeypatch):
    assert shard_path("w/1_analyze.jsonl", 1, 4) == Path("w/1_analyze.rank1-of-4.jsonl")
    assert shard_path("out", 0, 2) == Path("out.rank0-of-2")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device("cuda") == "cuda:3" and rank_device("cuda:0") == "cuda:0" and rank_device("cpu") == "cpu"


class Tagged:
    """A stage keeping records with an even `n` (tagged with the stage's name), dropping the others."""

    def __init__(self, tag):
        self.tag = tag

    def __call__(self, record):
        if record["n"] % 2:
            raise Dropped(f"odd at {self.tag}")
        return {**record, self.tag: True, "n": record["n"] // 2}


def test_merge_equals_one_process_with_duplicates_and_bad_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": f"r{i % 9}", "n": i}) for i in range(14)]  # r0..r4 occur twice
    lines[6] = "{not json"
    src.write_text("\n".join(lines) + "\n\n")
    stages = [("a", Tagged("a")), ("b", Tagged("b"))]
    one = run_pipeline(stages, src, tmp_path / "one", progress=False)
    for rank in (2, 1, 0):  # rank 0 last: it merges once every shard is done (no process group here)
        merged = run_pipeline(stages, src, tmp_path / "three", progress=False, rank=rank, world_size=3)
    assert merged is not None and [dataclasses.replace(r, seconds=None) for r in merged] == [
        dataclasses.replace(r, seconds=None) for r in one
    ]
    assert all(r.seconds is not None and r.seconds >= 0 for r in one) and all(r.seconds is None for r in merged)
    for name in ("1_a.jsonl", "2_b.jsonl"):
        for path in (Path(name), dropped_path(name)):
            assert (tmp_path / "three" / path).read_bytes() == (tmp_path / "one" / path).read_bytes(), path
    assert sum(1 for _ in open(tmp_path / "one" / "1_a.jsonl.dropped.jsonl")) >= 4


def test_rank0_without_a_process_group_waits_for_every_done_file(tmp_path, caplog):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "detections": []}) + "\n" for i in range(4)))
    assert run_pipeline([("refine", Refiner())], src, tmp_path / "w", progress=False, rank=0, world_size=2) is None
    assert "ranks [1] have not finished" in caplog.text and not (tmp_path / "w" / "1_refine.jsonl").exists()


def _torchrun(entry, nproc, argv, env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *entry, *argv]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def synth_inputs(tmp_path_factory, cache_dir, moving_box_video):
    import shutil

    root = tmp_path_factory.mktemp("synth")
    (root / "data").mkdir()
    shutil.copy(moving_box_video[0], root / "data" / "box.mp4")
    rows = []
    for i in range(10):
        span = [round(0.1 * i, 1), 3.9]
        rows.append(json.dumps({"id": f"v{i}", "task": "vtg", "video": "box.mp4", "caption": f"a red box {i}", "span": span,
                                "duration": 4.0, "source": "test"}))
    rows[3] = rows[3].replace("box.mp4", "gone.mp4")  # dropped: video unreadable
    rows[5] = "{cut"  # an unreadable line
    rows.append(rows[2])  # a duplicate id
    (root / "in.jsonl").write_text("\n".join(rows) + "\n")
    return root, build_tiny_grounding_dino(cache_dir / "tiny-grounding-dino")


def _answer(body):
    caption = body["messages"][-1]["content"]
    return "no json" if caption.endswith('7"') else json.dumps({"subject": "red box", "objects": []})


def test_two_ranks_killed_and_resumed_equal_one_process(synth_inputs):
    root, detector = synth_inputs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    faults = {'Caption: "a red box 8"': [500] * 50, 'Caption: "a red box 1"': [429, "disconnect"]}
    with LoopbackChatServer(_answer, latency=0.01, faults=faults, max_requests=200) as server:

        def argv(work):
            return ["run", str(root / "in.jsonl"), str(root / work), "--endpoint", server.url, "--model", "m",
                    "--concurrency", "4", "--retries", "2", "--backoff", "0.01", "--detector", detector,
                    "--data-root", str(root / "data"), "--fps", "2", "--box-threshold", "0.0", "--max-boxes", "10"]

        one = subprocess.run([sys.executable, "-m", "llava_st.data.synth", *argv("one")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=240)
        assert one.returncode == 1, one.stderr[-3000:]  # its input has a bad line and a duplicate id: rejected, so exit 1
        killed = _torchrun([str(ROOT / "tests" / "scripts" / "synth_kill_rank.py")], 2, argv("two"),
                           {**env, "LLAVA_ST_KILL_RANK": "1", "LLAVA_ST_KILL_AFTER": "1"})
        assert killed.returncode != 0 and "SIGKILL" in killed.stderr + killed.stdout
        assert not (root / "two" / "4_filter.jsonl").exists()
        partial = (root / "two" / "2_annotate.rank1-of-2.jsonl").read_text().count("\n")
        assert partial == 1  # rank 1 died annotating its 2nd record
        # Records either rank had analysed (kept or dropped) before the kill; when rank 1 died, torchrun
        # stopped rank 0 wherever it was, so how many that is depends on timing.
        done = "".join(p.read_text() for p in (root / "two").glob("1_analyze.rank*-of-2.jsonl*"))
        analysed = set(re.findall(r"a red box \d+(?=\\?\")", done))
        before = len(server.requests)
        resumed = _torchrun(["-m", "llava_st.data.synth"], 2, argv("two"), env)
        assert resumed.returncode == 1, resumed.stderr[-3000:]
        asked = [r[2]["messages"][-1]["content"] for r in server.requests[before:]]
        asked_again = {m for content in asked for m in re.findall(r"a red box \d+(?=\")", content)}
        assert analysed and not asked_again & analysed  # nothing analysed before the kill is asked again
    for stage in STAGES:
        for name in (f"{stage}.jsonl", f"{stage}.jsonl.dropped.jsonl"):
            assert (root / "two" / name).read_bytes() == (root / "one" / name).read_bytes(), name
    final = (root / "one" / "4_filter.jsonl").read_text()
    assert final.count("\n") >= 3
    summaries = [line for line in one.stdout.splitlines() if line.startswith(("analyze:", "annotate:", "refine:", "filter:"))]
    assert summaries[0].startswith("analyze: kept 7, dropped 3") and "analyzer request failed: 1" in summaries[0]
    for line in summaries[1:]:
        assert line.split(", resumed")[0] in resumed.stdout  # rank 0 prints the merged counts
