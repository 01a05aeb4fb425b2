"""`llava-st data mix` and `llava-st data synth` on bad input, through the real CLI: every bad line or record
gets one message naming the file, the line (or record) and the id and field, every other record goes on,
the exit status is 1 when something was rejected and a count is printed at the end; a file that cannot be
read at all is one line naming it (exit 2), never a traceback. Synthesis runs against the loopback
OpenAI-compatible server and the tiny GroundingDINO built offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llava_st import cli
from llava_st.data.jsonl import read_jsonl
from llava_st.data.mix import MixSource, mix_files
from llava_st.data.schema import validate_record

ROOT = Path(__file__).resolve().parents[1]
TURNS = [{"from": "human", "value": "<image>\nWhen does it happen?"}, {"from": "gpt", "value": "From 1.0s to 3.0s."}]


def vtg(rid, **changes):
    record = {"id": rid, "task": "vtg", "video": "v/a.mp4", "caption": "a man opens a door", "span": [1.0, 3.0],
              "duration": 20.0, "conversations": TURNS}
    record.update(changes)
    return {k: v for k, v in record.items() if v is not KeyError}


def run_cli(*argv, timeout=240):
    """The real command in a fresh interpreter: (exit status, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "llava_st.cli", "data", *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture()
def root(tmp_path):
    """A data root with v/a.mp4, and a link inside it that leads out (to ../outside/secret.mp4)."""
    data, outside = tmp_path / "root", tmp_path / "outside"
    (data / "v").mkdir(parents=True)
    outside.mkdir()
    (data / "v" / "a.mp4").write_bytes(b"x")
    (outside / "secret.mp4").write_bytes(b"x")
    (data / "link.mp4").symlink_to(outside / "secret.mp4")
    return data


# ---------------------------------------------------------------------------------------------- mix

BAD_LINES = {  # line content -> what its one message must contain
    b"{not json": "invalid JSON",
    b"caf\xe9": "not UTF-8",
    b"[1, 2]": "must be a JSON object",
    b"null": "must be a JSON object",
    b'{"id": "big", "task": "vtg", "duration": ' + b"9" * 5000 + b"}": "field=duration",
    json.dumps(vtg("span_str", span="abc")).encode(): "id=span_str field=span",
    json.dumps(vtg("reversed", span=[5.0, 1.0])).encode(): "id=reversed field=span",
    json.dumps(vtg("up", video="../outside/secret.mp4")).encode(): "id=up field=video",
    json.dumps(vtg("abs", video="/etc/passwd")).encode(): "id=abs field=video",
    json.dumps(vtg("linked", video="link.mp4")).encode(): "id=linked field=video",
    json.dumps(vtg("noid", id=KeyError)).encode(): "id=? field=id",
    json.dumps(vtg("badtask", task="grounding")).encode(): "id=badtask field=task",
    json.dumps(vtg("turns", conversations="hi")).encode(): "id=turns field=conversations",
    json.dumps(vtg("good1")).encode(): "id=good1 field=id: duplicate id",  # the second good1
}


def _mix_inputs(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    lines = [json.dumps(vtg("good1")).encode(), json.dumps(vtg("good2")).encode()] + list(BAD_LINES) + [b"", b"  "]
    jsonl.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines + [json.dumps(vtg("good3")).encode()]) + b"\n")
    listed = tmp_path / "b.json"  # a JSON list file (upstream's format), with a BOM
    items = [vtg("list1"), 7, "text", vtg("list_bad", duration=-1.0), {"id": "list2", "task": "qa", "video": "v/a.mp4"}]
    listed.write_bytes(b"\xef\xbb\xbf" + json.dumps(items, indent=1).encode())
    return jsonl, listed


def test_mix_names_every_bad_record_once_and_keeps_the_rest(tmp_path, root, capsys):
    jsonl, listed = _mix_inputs(tmp_path)
    out = tmp_path / "mix.jsonl"
    status = cli.main(["data", "mix", str(jsonl), str(listed), "--out", str(out), "--data-root", str(root), "--seed", "1"])
    text = capsys.readouterr().out
    assert status == 1
    messages = [line for line in text.splitlines() if line.startswith((f"{jsonl}: line ", f"{listed}: record "))]
    assert len(messages) == len(BAD_LINES) + 3  # one per bad record, none for the good ones or blank lines
    for n, (_, expected) in enumerate(BAD_LINES.items(), 3):  # lines 1-2 are good; the BOM is no problem
        mine = [m for m in messages if m.startswith(f"{jsonl}: line {n}: ")]
        assert len(mine) == 1 and expected in mine[0], (n, expected, mine)
    assert [m.split(": ")[1] for m in messages if m.startswith(str(listed))] == ["record 2", "record 3", "record 4"]
    assert "id=list_bad field=duration" in text
    kept = [r["id"] for r in read_jsonl(out)]
    assert sorted(kept) == ["good1", "good2", "good3", "list1", "list2"]
    total = len(BAD_LINES) + 3 + 5
    assert f"{out}: 5 records; {len(BAD_LINES) + 3} of {total} input records rejected" in text


def test_mix_counts_apply_to_the_good_records(tmp_path, root):
    jsonl, listed = _mix_inputs(tmp_path)
    out = tmp_path / "mix.jsonl"
    problems = []
    report = mix_files([MixSource(str(jsonl), count=6), MixSource(str(listed), ratio=1.0)], str(out), data_root=root,
                       progress=False, on_problem=problems.append)
    assert report.taken == {str(jsonl): 6, str(listed): 2} and report.written == 8
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(i.split("#")[0] for i in ids if i.startswith("good")) == ["good1"] * 2 + ["good2"] * 2 + ["good3"] * 2
    assert len(set(ids)) == 8 and len(problems) == report.rejected


def test_mix_strict_refuses_missing_fields_too(tmp_path, capsys):
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps(vtg("ok")) + "\n" + json.dumps({"id": "bare", "task": "vtg"}) + "\n")
    out = tmp_path / "mix.jsonl"
    assert cli.main(["data", "mix", str(src), "--out", str(out)]) == 0  # a missing field is the loader's to refuse
    assert cli.main(["data", "mix", str(src), "--out", str(out), "--strict"]) == 1
    text = capsys.readouterr().out
    assert f"{src}: line 2: id=bare field=" in text and [r["id"] for r in read_jsonl(out)] == ["ok"]


@pytest.mark.parametrize("kind", ["missing", "directory", "utf16", "broken list", "binary"])
def test_mix_unreadable_source_is_one_line_exit_2(tmp_path, capsys, kind):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(vtg("g")) + "\n")
    bad = tmp_path / "bad.jsonl"
    if kind == "directory":
        bad.mkdir()
    elif kind == "utf16":
        bad.write_bytes(json.dumps(vtg("u")).encode("utf-16"))
    elif kind == "broken list":
        bad.write_bytes(b'[{"id": "x"}, {')
    elif kind == "binary":
        bad.write_bytes(b"\x00\x01\x00\x02\x00\x03\x00\x04" * 8)
    out = tmp_path / "mix.jsonl"
    assert cli.main(["data", "mix", str(good), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith(f"llava-st data mix: {bad}: ") and "Traceback" not in "".join(err)
    assert not out.exists()


def test_mix_subprocess_never_shows_a_traceback(tmp_path, root):
    jsonl, listed = _mix_inputs(tmp_path)
    status, out, err = run_cli("mix", jsonl, listed, "--out", tmp_path / "m.jsonl", "--data-root", root)
    assert status == 1 and "Traceback" not in out + err and "input records rejected" in out
    status, out, err = run_cli("mix", jsonl, tmp_path / "nowhere.jsonl", "--out", tmp_path / "m2.jsonl")
    assert status == 2 and "Traceback" not in out + err and f"{tmp_path / 'nowhere.jsonl'}: file not found" in err
    status, out, err = run_cli("mix", f"{jsonl}@lots", "--out", tmp_path / "m3.jsonl")
    assert status == 2 and "Traceback" not in err and "PATH@COUNT" in err
    status, out, err = run_cli("mix", f"{jsonl}@5", "--out", tmp_path / "m4.jsonl", "--data-root", tmp_path / "nodir")
    assert status == 2 and "Traceback" not in err and "not a directory" in err


@settings(max_examples=60, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(st.binary(max_size=30) | st.sampled_from([json.dumps(vtg(f"r{i}")).encode() for i in range(4)]),
                      min_size=1, max_size=8), bom=st.booleans())
def test_mix_of_arbitrary_bytes_accounts_for_every_line(tmp_path_factory, lines, bom):
    folder = tmp_path_factory.mktemp("mixfuzz")
    src, out = folder / "a.jsonl", folder / "out.jsonl"
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n"
    src.write_bytes(data)
    problems = []
    try:
        report = mix_files([MixSource(str(src))], str(out), progress=False, on_problem=problems.append)
    except ValueError as exc:  # every record bad and yet records asked for: named
        assert str(exc).startswith(str(src))
        return
    if report.file_errors:  # e.g. bytes that read as UTF-16: one error naming the file
        assert len(report.file_errors) == 1 and report.file_errors[0].startswith(str(src))
        return
    assert len(problems) == report.rejected and all(p.startswith(f"{src}: ") for p in problems)
    assert report.written == report.records - report.rejected
    for record in read_jsonl(out):
        assert record["id"] in {"r0", "r1", "r2", "r3"} and validate_record(record) == []


# -------------------------------------------------------------------------------------------- synth


def _answer(body):
    return json.dumps({"subject": "the man", "objects": ["a door"]})


def _synth_input(path):
    rows = [
        json.dumps(vtg("s1")).encode(),
        b"{cut",  # line 2
        b"[1, 2]",  # line 3
        json.dumps(vtg("s2", id=KeyError)).encode(),  # line 4: no id
        json.dumps(vtg("s3", caption=KeyError)).encode(),  # line 5: no caption
        json.dumps(vtg("s4", caption=5)).encode(),  # line 6: a number
        json.dumps(vtg("s1")).encode(),  # line 7: a duplicate id
        json.dumps(vtg("s5", id=True)).encode(),  # line 8: a boolean id
        b"caf\xe9",  # line 9
        json.dumps(vtg("s6")).encode(),  # line 10
    ]
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(rows) + b"\n")


def test_synth_analyze_names_bad_input_and_goes_on(tmp_path):
    from llava_st.testing.openai_server import LoopbackChatServer

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _synth_input(src)
    with LoopbackChatServer(_answer, max_requests=50) as server:
        status, stdout, stderr = run_cli("synth", "analyze", src, out, "--endpoint", server.url, "--model", "m", "--retries", "0")
        asked = len(server.requests)
    assert status == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    assert asked == 2  # only the two good records reached the server
    assert [r["id"] for r in read_jsonl(out)] == ["s1", "s6"]
    for where, field in [("line 2", "invalid JSON"), ("line 3", "JSON object"), ("line 4", "field=id"), ("line 5", "field=caption"),
                         ("line 6", "field=caption"), ("line 7", "field=id: duplicate id"), ("line 8", "field=id"),
                         ("line 9", "not UTF-8")]:
        mine = [m for m in stderr.splitlines() if f"{src}: {where}: " in m]
        assert len(mine) == 1 and field in mine[0], (where, mine)
    dropped = {r["id"]: r["reason"] for r in read_jsonl(str(out) + ".dropped.jsonl")}
    assert dropped == {"line2": "unreadable input line", "line3": "unreadable input line", "line4": "bad input id",
                       "s3": "input lacks field 'caption'", "s4": "malformed input record", "line8": "bad input id",
                       "line9": "unreadable input line"}
    assert "synth: 8 input record(s) rejected" in stdout
    # A rerun resumes (nothing asked again) and still says what was rejected.
    status, stdout, _ = run_cli("synth", "analyze", src, out, "--endpoint", "http://127.0.0.1:9/v1", "--model", "m")
    assert status == 1 and "resumed past 4" in stdout and "synth: 8 input record(s) rejected" in stdout


def test_synth_reads_a_json_list_input(tmp_path, caplog):
    src, out = tmp_path / "in.json", tmp_path / "out.jsonl"
    rows = [dict(vtg("a"), detections=[{"t": 1.0, "boxes": [[1, 1, 5, 5]]}, {"t": 3.5, "boxes": [[1, 1, 5, 5]]}]),
            "x", dict(vtg("b"), detections=[{"t": "soon", "boxes": [[1, 1, 2, 2]]}, {"t": 1.0, "boxes": [[0, 0, 1, 1]]}])]
    src.write_text(json.dumps(rows))
    assert cli.main(["data", "synth", "refine", str(src), str(out)]) == 1
    assert [r["id"] for r in read_jsonl(out)] == ["a"]
    dropped = {r["id"]: r["reason"] for r in read_jsonl(str(out) + ".dropped.jsonl")}
    assert dropped == {"record2": "unreadable input line", "b": "malformed input record"}
    assert f"{src}: record 2: " in caplog.text and f"{src}: record 3: id=b: malformed input record (field=detections" in caplog.text


def test_synth_filter_bad_fields_are_named(tmp_path, caplog):
    base = {**vtg("f"), "target": "a man", "fps": 10.0, "width": 100, "height": 80,
            "detections": [{"t": 1.0, "boxes": [[1, 1, 9, 9]], "scores": [0.9]}, {"t": 2.0, "boxes": [[1, 1, 9, 9]], "scores": [0.9]}]}
    rows = [base, {**base, "id": "nan_w", "width": float("nan")}, {**base, "id": "neg_fps", "fps": -1},
            {**base, "id": "no_caption", "caption": None}, {**base, "id": "huge", "width": 10**400},
            {**base, "id": "bad_scores", "detections": [{"t": 1.0, "boxes": [[1, 1, 9, 9]], "scores": []}]},
            {**base, "id": "up", "video": "../outside/x.mp4"}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["data", "synth", "filter", str(src), str(out), "--max-boxes", "5"]) == 1
    err = caplog.text
    final = list(read_jsonl(out))
    assert [r["id"] for r in final] == ["f"] and validate_record(final[0]) == []
    for n, (rid, field) in enumerate([("nan_w", "width"), ("neg_fps", "fps"), ("no_caption", "caption"), ("huge", "width"),
                                      ("bad_scores", "detections"), ("up", "video")], 2):
        mine = [m for m in err.splitlines() if f"{src}: line {n}: id={rid}: " in m]
        assert len(mine) == 1 and f"field={field}" in mine[0], (rid, mine)


@pytest.mark.parametrize("kind", ["missing", "directory", "utf16", "broken list"])
def test_synth_unreadable_input_is_one_line_exit_2(tmp_path, capsys, kind):
    src = tmp_path / "in.jsonl"
    if kind == "directory":
        src.mkdir()
    elif kind == "utf16":
        src.write_bytes(json.dumps(vtg("u")).encode("utf-16"))
    elif kind == "broken list":
        src.write_bytes(b'[{"id": "x"}, {')
    assert cli.main(["data", "synth", "refine", str(src), str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"llava-st data synth: {src}: "), err
    assert not (tmp_path / "out.jsonl").exists()


def test_synth_annotate_refuses_bad_spans_targets_and_paths(tmp_path, cache_dir, moving_box_video):
    import shutil

    from llava_st.testing.grounding_dino import build_tiny_grounding_dino

    detector = build_tiny_grounding_dino(cache_dir / "tiny-grounding-dino")
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    shutil.copy(moving_box_video[0], data / "box.mp4")
    shutil.copy(moving_box_video[0], outside / "box.mp4")
    (data / "link.mp4").symlink_to(outside / "box.mp4")
    good = {**vtg("a1", video="box.mp4", span=[1.0, 2.0], duration=4.0), "target": "red box"}
    rows = [good, {**good, "id": "span_str", "span": "abc"}, {**good, "id": "reversed", "span": [3.0, 1.0]},
            {**good, "id": "no_target", "target": KeyError}, {**good, "id": "up", "video": "../outside/box.mp4"},
            {**good, "id": "abs", "video": str(outside / "box.mp4")}, {**good, "id": "linked", "video": "link.mp4"},
            {**good, "id": "gone", "video": "gone.mp4"}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({k: v for k, v in r.items() if v is not KeyError}) + "\n" for r in rows))
    status, stdout, stderr = run_cli("synth", "annotate", src, out, "--detector", detector, "--data-root", data, "--fps", "2",
                                     "--box-threshold", "0.0")
    assert status == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert [r["id"] for r in read_jsonl(out)] == ["a1"]
    dropped = {r["id"]: r["reason"] for r in read_jsonl(str(out) + ".dropped.jsonl")}
    assert dropped == {"span_str": "malformed input record", "reversed": "malformed input record",
                       "no_target": "input lacks field 'target'", "up": "path outside data root", "abs": "path outside data root",
                       "linked": "path outside data root", "gone": "video unreadable"}
    for rid, field in [("span_str", "span"), ("reversed", "span"), ("no_target", "target"), ("up", "video"), ("abs", "video"),
                       ("linked", "video"), ("gone", "video")]:
        assert any(f"id={rid}" in m and f"field={field}" in m for m in stderr.splitlines()), (rid, field)
    for n, rid in [(5, "up"), (6, "abs"), (7, "linked")]:  # bad input: one message naming file, line, id and field
        mine = [m for m in stderr.splitlines() if f"id={rid}" in m]
        assert len(mine) == 1 and f"{src}: line {n}: id={rid}: path outside data root (field=video: " in mine[0], mine
    assert "synth: 6 input record(s) rejected" in stdout  # a missing video is no bad record
