"""STVG synthesis stages: Refiner and Filter on hand-built detections, resumable stage runs with drop
counts, and the Analyzer against an OpenAI-compatible server on loopback replaying fixed answers."""

import json

import pytest

from llava_st.core.timespan import parse_span
from llava_st.data.jsonl import read_jsonl
from llava_st.data.schema import validate_record
from llava_st.data.synth import Analyzer, Dropped, Filter, OpenAIChat, Refiner, parse_objects, run_stage
from llava_st.data.synth.stage import dropped_path
from llava_st.testing.openai_replay import ReplayServer


def det(t, *boxes):
    """A detection entry at t seconds: boxes given as (x0, y0, x1, y1, score)."""
    return {"t": t, "boxes": [list(b[:4]) for b in boxes], "scores": [b[4] for b in boxes]}


def annotated(detections, rid="r1", span=(0.0, 10.0)):
    return {
        "id": rid,
        "task": "vtg",
        "video": "v.mp4",
        "caption": "a man walks to the door",
        "span": list(span),
        "duration": 30.0,
        "fps": 10.0,
        "width": 100,
        "height": 80,
        "target": "a man",
        "objects": ["a man", "door"],
        "source": "charades-sta",
        "detections": detections,
    }


# ---------------------------------------------------------------- Refiner
def test_refiner_moves_span_to_detections():
    dets = [det(0.0), det(1.0, (1, 1, 9, 9, 0.5)), det(2.0), det(4.5, (1, 1, 9, 9, 0.4)), det(6.0), det(10.0)]
    out = Refiner()(annotated(dets))
    assert out["span"] == [1.0, 4.5] and out["span_before_refine"] == [0.0, 10.0]
    assert [d["t"] for d in out["detections"]] == [1.0, 2.0, 4.5]


@pytest.mark.parametrize(
    "times, reason",
    [
        ((), "target never detected"),
        ((1.0, 2.5), "refined span shorter than 2 s"),
        ((0.0, 121.0), "refined span longer than 120 s"),
    ],
)
def test_refiner_drops(times, reason):
    dets = [det(0.5)] + [det(t, (1, 1, 9, 9, 0.9)) for t in times]
    with pytest.raises(Dropped) as e:
        Refiner()(annotated(dets, span=(0, 130)))
    assert e.value.reason == reason


def test_refiner_keeps_exactly_two_seconds():
    assert Refiner()(annotated([det(1.0, (1, 1, 9, 9, 0.9)), det(3.0, (1, 1, 9, 9, 0.9))]))["span"] == [1.0, 3.0]


# ---------------------------------------------------------------- Filter
def test_filter_keeps_most_confident_box_and_drops_complex_frames():
    b = lambda x, s: (x, 10, x + 20, 30, s)  # noqa: E731  (area 400)
    dets = [
        det(1.0, b(0, 0.4), b(50, 0.9)),  # best: x = 50
        det(1.5, b(1, 0.5), b(2, 0.6), b(3, 0.7), b(52, 0.95)),  # 4 boxes: complex, dropped
        det(2.0),  # nothing detected
        det(2.5, b(54, 0.8), b(0, 0.3), b(10, 0.35)),  # 3 boxes: kept, best x = 54
    ]
    out = Filter(seed=0)(dict(annotated(dets), span=[1.0, 2.5]))
    assert validate_record(out) == []
    assert out["task"] == "stvg" and out["synthetic"] is True and "detections" not in out
    assert out["boxes"] == [{"t": 1.0, "xyxy": [50, 10, 70, 30]}, {"t": 2.5, "xyxy": [54, 10, 74, 30]}]
    assert parse_span(out["conversations"][1]["value"]).span == (1.0, 2.5)
    assert out["target"] == "a man" and out["source"] == "charades-sta"
    assert "a man walks to the door" in out["conversations"][0]["value"]


@pytest.mark.parametrize(
    "second_area_side, dropped", [(20, False), (14.2, False), (14.1, True), (28.2, False), (28.3, True)]
)
def test_filter_area_ratio_to_adjacent_frame(second_area_side, dropped):
    # Areas 400 then side^2: ratio < 1/2 (side < 14.14) or > 2 (side > 28.28) drops the sample.
    dets = [
        det(1.0, (0, 0, 20, 20, 0.9)),
        det(2.0, (0, 0, second_area_side, second_area_side, 0.9)),
        det(3.0, (0, 0, 20, 20, 0.9)),
    ]
    record = dict(annotated(dets), span=[1.0, 3.0])
    if dropped:
        with pytest.raises(Dropped, match="box area jumps"):
            Filter()(record)
    else:
        assert len(Filter()(record)["boxes"]) == 3


def test_filter_drops_when_every_frame_is_complex():
    dets = [det(1.0, *[(0, 0, 5, 5, 0.5)] * 4), det(3.0)]
    with pytest.raises(Dropped, match="every frame complex"):
        Filter()(dict(annotated(dets), span=[1.0, 3.0]))


# ---------------------------------------------------------------- stage runner
def _inputs(path, n):
    with open(path, "w") as f:
        for i in range(n):
            hits = [det(float(t), (1, 1, 9, 9, 0.9)) for t in range(i % 4)]  # 0-3 detections
            f.write(json.dumps(annotated(hits, rid=f"r{i}", span=(0, 5))) + "\n")
        f.write("{broken\n")


def test_run_stage_resumes_and_counts(tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _inputs(src, 12)
    calls = []

    class Crashing(Refiner):
        def __call__(self, record):
            calls.append(record["id"])
            if len(calls) == 7:
                raise KeyboardInterrupt  # the job dies mid-file
            return super().__call__(record)

    with pytest.raises(KeyboardInterrupt):
        run_stage(Crashing(), src, out, name="refine", progress=False)
    with open(out, "a") as f:
        f.write('{"id": "half-writ')  # a line cut off by the crash
    calls.clear()
    report = run_stage(Crashing(), src, out, name="refine", progress=False)
    assert calls == [f"r{i}" for i in range(6, 12)]  # only the unfinished records
    assert report.resumed == 6
    # i % 4 == 3 -> 3 detections spanning 2 s: kept; 0 -> never detected; 1, 2 -> too short.
    assert report.kept == 3 and [r["id"] for r in read_jsonl(out)] == ["r3", "r7", "r11"]
    assert report.dropped == {
        "target never detected": 3,
        "refined span shorter than 2 s": 6,
        "unreadable input line": 1,
    }
    assert sum(1 for _ in read_jsonl(dropped_path(out))) == 10
    again = run_stage(Refiner(), src, out, name="refine", progress=False)
    assert again.resumed == 12 and again.kept == 3 and sum(again.dropped.values()) == 10


def test_run_stage_rejects_bad_input_by_id_and_keeps_going(tmp_path, caplog):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = annotated([det(0.0, (1, 1, 9, 9, 0.9)), det(3.0, (1, 1, 9, 9, 0.9))], rid="good")
    no_detections_field = {"id": "nodet", "caption": "x"}
    wrong_type = dict(
        good, id="wrongtype", detections=[{"t": "soon", "boxes": [[1, 1, 2, 2]]}, {"t": 1.0, "boxes": [[0, 0, 1, 1]]}]
    )
    no_t = dict(good, id="not", detections=[{"boxes": [[1, 1, 2, 2]]}])
    src.write_text("\n".join(json.dumps(r) for r in (no_t, wrong_type, no_detections_field, good)) + "\n")
    report = run_stage(Refiner(), src, out, progress=False)
    assert [r["id"] for r in read_jsonl(out)] == ["good"]
    assert report.dropped == {"input lacks field 't'": 1, "malformed input record": 1, "target never detected": 1}
    assert "id=not: input lacks field 't'" in caplog.text and "id=wrongtype" in caplog.text


# ---------------------------------------------------------------- Analyzer
def test_parse_objects():
    assert parse_objects('{"subject": "the man in red", "objects": ["door", "The Man in red"]}') == [
        "the man in red",
        "door",
    ]
    assert parse_objects('Sure!\n```json\n{"subject": "a dog", "objects": []}\n```\nHope this helps.') == ["a dog"]
    assert parse_objects("Here: {'subject': 'a cat', 'objects': ['sofa']} done") == ["a cat", "sofa"]
    assert parse_objects('{"subject": null, "objects": ["ball"]}') == ["ball"]
    assert parse_objects('{"subject": "none", "objects": null}') == []
    for bad in (
        "no json at all",
        '{"subject": "a"',
        '{"answer": "a man"}',
        '{"subject": "a", "objects": "b"}',
        "[1, 2]",
        "{{{}",
        None,
        "",
    ):
        assert parse_objects(bad) is None, bad


ANSWERS = [
    '{"subject": "the woman", "objects": ["red chair"]}',
    "I think the subject is a woman.",  # malformed
    '```json\n{"subject": "a dog", "objects": ["ball"]}\n```',
    '{"subject": null, "objects": []}',  # nothing localisable
    '{"subject": "man", "objects": [',  # malformed (cut off)
    ReplayServer.FAIL,  # the server fails this request
]


@pytest.fixture
def replay_server():
    with ReplayServer(ANSWERS) as server:
        yield server


def test_analyzer_over_http(tmp_path, replay_server):
    src, out = tmp_path / "vtg.jsonl", tmp_path / "analyzed.jsonl"
    with open(src, "w") as f:
        for i in range(len(ANSWERS)):
            f.write(
                json.dumps(
                    {
                        "id": f"c{i}",
                        "task": "vtg",
                        "video": "v.mp4",
                        "caption": f"caption {i}",
                        "span": [0, 5],
                        "duration": 9,
                    }
                )
                + "\n"
            )
    analyzer = Analyzer(OpenAIChat(replay_server.url, "qwen2.5-72b-instruct", api_key="k", timeout=10, retries=0))
    report = run_stage(analyzer, src, out, name="analyze", progress=False)
    kept = list(read_jsonl(out))
    assert [(r["id"], r["target"], r["objects"]) for r in kept] == [
        ("c0", "the woman", ["the woman", "red chair"]),
        ("c2", "a dog", ["a dog", "ball"]),
    ]
    assert report.dropped == {"malformed analyzer answer": 2, "no localisable object": 1, "analyzer request failed": 1}
    path, auth, body = replay_server.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["model"] == "qwen2.5-72b-instruct"
    assert body["messages"][0]["role"] == "system" and "caption 0" in body["messages"][1]["content"]


def test_analyzer_unreachable_endpoint_drops_record():
    analyzer = Analyzer(OpenAIChat("http://127.0.0.1:9/v1", "m", timeout=2, retries=2, sleep=lambda s: None))
    with pytest.raises(Dropped, match="analyzer request failed") as e:
        analyzer({"id": "x", "caption": "a man"})
    assert e.value.detail.startswith("connection error") and e.value.detail.endswith("after 3 attempt(s)")


def test_analyzer_local_transformers_model(tiny_qwen2_dir):
    from llava_st.data.synth import LocalChat

    chat = LocalChat(str(tiny_qwen2_dir), max_new_tokens=8)
    answer = chat([{"role": "user", "content": "Caption: a man"}])
    assert isinstance(answer, str)
    try:  # a random model answers noise: the Analyzer must count it as malformed, not crash
        out = Analyzer(chat)({"id": "x", "caption": "a man"})
        assert out["target"]
    except Dropped as e:
        assert e.reason in ("malformed analyzer answer", "no localisable object")


@pytest.mark.parametrize("tail", [b"", b'{"id": "cut', b'{"id": "cut' * 20000])
def test_writer_append_drops_a_cut_last_line(tmp_path, tail):
    from llava_st.data.jsonl import JsonlWriter

    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n' + tail)
    with JsonlWriter(path, append=True) as w:
        w.write({"id": "c"})
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b", "c"]
    only_cut = tmp_path / "cut.jsonl"
    only_cut.write_bytes(b'{"id": "x' * 30000)
    with JsonlWriter(only_cut, append=True) as w:
        w.write({"id": "y"})
    assert [r["id"] for r in read_jsonl(only_cut)] == ["y"]


# ---------------------------------------------------------------- served Analyzer: concurrency, retries
def _captions(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"c{i}", "task": "vtg", "video": "v.mp4", "caption": f"thing {i}", "span": [0, 5]}) + "\n")


def _key(i):
    return f'Caption: "thing {i}"'


def _subject(body):
    caption = body["messages"][-1]["content"].split('"')[1]
    return json.dumps({"subject": f"the {caption}", "objects": []}) if not caption.endswith("7") else "no idea"


FAULTS = {
    _key(1): [(429, "0.01"), 500],  # kept on the 3rd attempt
    _key(2): ["timeout"],  # the client's timeout, then kept
    _key(3): ["disconnect", 502],  # kept on the 3rd attempt
    _key(4): [500] * 9,  # fails every attempt: dropped after retries + 1
    _key(5): [400],  # not retried: dropped after 1 attempt
    _key(6): ["timeout"] * 9,
}


def _served_run(tmp_path, tag, concurrency, n=20):
    from llava_st.testing.openai_server import LoopbackChatServer

    src, out = tmp_path / "in.jsonl", tmp_path / f"{tag}.jsonl"
    _captions(src, n)
    # The client's timeout is 20x the server's latency, so only the "timeout" faults (held `hang` s) time out,
    # even on a loaded machine: a first request once took over 0.4 s while another job used both cores.
    with LoopbackChatServer(_subject, latency=0.05, faults=FAULTS, hang=3.0, max_requests=100) as server:
        chat = OpenAIChat(server.url, "m", timeout=1.0, retries=3, backoff=0.01)
        report = run_stage(Analyzer(chat, concurrency=concurrency), src, out, name="analyze", progress=False)
    return server, report, out


def test_served_analyzer_in_flight_retries_and_order(tmp_path):
    server, report, out = _served_run(tmp_path, "c8", concurrency=8)
    assert server.max_in_flight >= 4 and server.overflow == 0
    assert server.attempts == {**{_key(i): 1 for i in range(20)}, _key(1): 3, _key(2): 2, _key(3): 3, _key(4): 4, _key(6): 4}
    assert len(server.requests) == 20 + 2 + 1 + 2 + 3 + 3  # bounded: every retry accounted for
    kept = list(read_jsonl(out))
    assert [r["id"] for r in kept] == [f"c{i}" for i in range(20) if i not in (4, 5, 6, 7, 17)]  # input order
    assert kept[1]["target"] == "the thing 1"
    rows = list(read_jsonl(dropped_path(out)))
    assert [(r["id"], r["reason"], r.get("detail")) for r in rows] == [
        ("c4", "analyzer request failed", "HTTP 500 after 4 attempt(s)"),
        ("c5", "analyzer request failed", "HTTP 400 Bad Request"),
        ("c6", "analyzer request failed", "timeout after 4 attempt(s)"),
        ("c7", "malformed analyzer answer", None),
        ("c17", "malformed analyzer answer", None),
    ]
    assert report.kept == 15 and report.dropped == {"analyzer request failed": 3, "malformed analyzer answer": 2}
    # One request at a time writes the same bytes.
    _, _, serial = _served_run(tmp_path, "c1", concurrency=1)
    assert serial.read_bytes() == out.read_bytes()
    assert dropped_path(serial).read_bytes() == dropped_path(out).read_bytes()


def test_served_analyzer_resumes_after_a_crash(tmp_path):
    from llava_st.testing.openai_server import LoopbackChatServer

    src, out, whole = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "whole.jsonl"
    _captions(src, 30)

    class Dies(Analyzer):
        def __call__(self, record):
            if record["id"] == "c12":
                raise RuntimeError("the job is killed")
            return super().__call__(record)

    with LoopbackChatServer(_subject, latency=0.02, max_requests=200) as server:
        chat = OpenAIChat(server.url, "m", timeout=5, retries=0)
        with pytest.raises(RuntimeError, match="killed"):
            run_stage(Dies(chat, concurrency=6), src, out, progress=False)
        first = len(server.requests)
        partial = [r["id"] for r in read_jsonl(out)]
        rejected = [r["id"] for r in read_jsonl(dropped_path(out))]
        assert partial == [f"c{i}" for i in range(30) if i % 10 != 7][: len(partial)]  # a prefix, in order
        assert len(partial) <= 11 and rejected in ([], ["c7"])
        report = run_stage(Analyzer(chat, concurrency=6), src, out, progress=False)
        assert report.resumed == len(partial) + len(rejected)
        assert len(server.requests) - first <= 30 - report.resumed + 12  # in-flight ones of the crash redone at most
        run_stage(Analyzer(chat, concurrency=1), src, whole, progress=False)
    assert out.read_bytes() == whole.read_bytes()
    assert dropped_path(out).read_bytes() == dropped_path(whole).read_bytes()
    again = run_stage(Analyzer(chat, concurrency=6), src, out, progress=False)  # server gone: nothing is asked
    assert again.resumed == 30 and again.kept == 27  # c7, c17, c27 malformed


def test_retry_waits_honour_retry_after_and_back_off():
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from llava_st.data.synth.analyzer import RequestFailed, retry_after_seconds
    from llava_st.testing.openai_server import LoopbackChatServer

    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after_seconds(later) <= 30
    waits = []
    faults = {"a": [(429, "0.25"), (503, "999"), 500, 500], "b": [500] * 3}
    with LoopbackChatServer(faults=faults, max_requests=20) as server:
        chat = OpenAIChat(server.url, "m", timeout=5, retries=4, backoff=0.1, max_retry_after=0.5, sleep=waits.append)
        assert chat([{"role": "user", "content": "a"}]) == "a"
        assert waits[:2] == [0.25, 0.5]  # Retry-After, capped at max_retry_after
        assert 0.2 <= waits[2] <= 0.4 and 0.4 <= waits[3] <= 0.8  # backoff * 2**attempt (from 0), 50-100 % jitter
        waits.clear()
        with pytest.raises(RequestFailed, match="HTTP 500 after 3 attempt"):
            OpenAIChat(server.url, "m", retries=2, backoff=0.1, sleep=waits.append)([{"role": "user", "content": "b"}])
        assert len(waits) == 2 and server.attempts == {"a": 5, "b": 3}
