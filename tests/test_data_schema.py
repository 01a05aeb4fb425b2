"""Uni-STG validator: valid records pass; every malformed record is rejected by id and field, none crashes."""

import json
import os
import random
import subprocess
import sys

import pytest

from llava_st import cli
from llava_st.data.schema import validate_file, validate_record


def stvg():
    return {
        "id": "s1",
        "task": "stvg",
        "video": "v/a.mp4",
        "caption": "the man in red turns",
        "conversations": [
            {"from": "human", "value": "<image>\nWhere?"},
            {"from": "gpt", "value": "From 1.0s to 3.0s."},
        ],
        "span": [1.0, 3.0],
        "boxes": [{"t": 1.0, "xyxy": [10, 10, 50, 40]}, {"t": 2.5, "xyxy": [12, 11, 52, 41]}],
        "width": 640,
        "height": 360,
        "duration": 20.0,
        "fps": 30.0,
    }


def vtg():
    r = stvg()
    r.update(id="v1", task="vtg")
    del r["boxes"], r["width"], r["height"], r["fps"]
    return r


def rec():
    r = stvg()
    r.update(id="r1", task="rec", image="coco/1.jpg", boxes=[{"t": 0.0, "xyxy": [1, 2, 30, 40]}])
    for k in ("video", "span", "duration", "fps"):
        del r[k]
    r["conversations"][1]["value"] = "The object is located."
    return r


def qa():
    return {
        "id": "q1",
        "task": "qa",
        "video": "x.mp4",
        "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A cat."}],
    }


BASES = {"stvg": stvg, "vtg": vtg, "rec": rec, "qa": qa}


def test_valid_records_pass():
    for make in BASES.values():
        assert validate_record(make()) == []
    r = stvg()
    r["clip"] = [0.5, 10.0]
    assert validate_record(r) == []


def _set(path, value):
    def mutate(r):
        target = r
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _del(key):
    return lambda r: r.pop(key)


# (tasks the mutation applies to, mutation, field the message must name, words it must contain)
MUTATIONS = [
    ("stvg vtg rec qa", _del("id"), "id", "missing"),
    ("stvg vtg rec qa", _set(["id"], ""), "id", "missing"),
    ("stvg vtg rec qa", _set(["task"], "detection"), "task", "unknown task"),
    ("stvg vtg rec qa", _del("task"), "task", "unknown task"),
    ("stvg vtg rec qa", _del("conversations"), "conversations", "non-empty list"),
    ("stvg vtg rec qa", _set(["conversations"], []), "conversations", "non-empty list"),
    ("stvg vtg rec qa", _set(["conversations", 0, "from"], "user"), "conversations[0].from", "human"),
    ("stvg vtg rec qa", _set(["conversations", 0, "value"], "no image token"), "conversations[0].value", "<image>"),
    ("stvg vtg rec qa", _set(["conversations", 1, "value"], ""), "conversations[1].value", "non-empty"),
    ("stvg vtg rec qa", _set(["conversations", 1], "text"), "conversations[1]", "object"),
    ("stvg vtg qa", _set(["video"], "../../etc/passwd"), "video", "escapes"),
    ("stvg vtg qa", _set(["video"], "/abs/a.mp4"), "video", "relative"),
    ("stvg vtg qa", _set(["video"], ""), "video", "non-empty"),
    ("stvg vtg qa", _set(["video"], 5), "video", "non-empty"),
    ("stvg vtg qa", _set(["image"], "also.jpg"), "video/image", "exactly one"),
    ("stvg vtg qa", _del("video"), "video/image", "exactly one"),
    ("rec", _set(["image"], "a/../../b.jpg"), "image", "escapes"),
    ("rec", lambda r: r.update(video=r.pop("image")), "video", "rec needs"),
    ("stvg vtg", lambda r: r.update(image=r.pop("video")), "image", "needs a 'video'"),
    ("stvg vtg rec", _del("caption"), "caption", "non-empty"),
    ("stvg vtg rec", _set(["caption"], "   "), "caption", "non-empty"),
    ("stvg vtg", _del("span"), "span", "missing"),
    ("stvg vtg", _set(["span"], [3.0, 1.0]), "span", "reversed"),
    ("stvg vtg", _set(["span"], [1.0, 25.0]), "span", "after the video"),
    ("stvg vtg", _set(["span"], [-1.0, 3.0]), "span", "before the video"),
    ("stvg vtg", _set(["span"], [float("nan"), 3.0]), "span", "finite"),
    ("stvg vtg", _set(["span"], [1.0, float("inf")]), "span", "finite"),
    ("stvg vtg", _set(["span"], [1.0]), "span", "two finite"),
    ("stvg vtg", _set(["span"], "1-3"), "span", "two finite"),
    ("stvg vtg", _set(["span"], [True, 3.0]), "span", "two finite"),
    ("stvg vtg", _set(["clip"], [2.0, 2.5]), "span", "outside the clip"),
    ("stvg vtg", _set(["clip"], [5.0, 1.0]), "clip", "reversed"),
    ("stvg vtg", _del("duration"), "duration", "missing"),
    ("stvg vtg", _set(["duration"], 0), "duration", "positive"),
    ("stvg vtg", _set(["duration"], float("nan")), "duration", "positive"),
    ("stvg", _del("fps"), "fps", "missing"),
    ("stvg", _set(["fps"], 1e6), "duration", "more than 10,000,000"),
    ("stvg", _set(["fps"], -30), "fps", "positive"),
    ("stvg rec", _del("width"), "width", "missing"),
    ("stvg rec", _set(["height"], "360"), "height", "positive"),
    ("stvg rec", _del("boxes"), "boxes", "non-empty"),
    ("stvg rec", _set(["boxes"], []), "boxes", "non-empty"),
    ("stvg rec", _set(["boxes", 0, "xyxy"], [10, 10, 10, 40]), "boxes[0].xyxy", "zero or negative area"),
    ("stvg rec", _set(["boxes", 0, "xyxy"], [50, 10, 10, 40]), "boxes[0].xyxy", "zero or negative area"),
    ("stvg rec", _set(["boxes", 0, "xyxy"], [-5, 10, 20, 40]), "boxes[0].xyxy", "negative"),
    ("stvg rec", _set(["boxes", 0, "xyxy"], [10, 10, 700, 40]), "boxes[0].xyxy", "outside the frame"),
    ("stvg rec", _set(["boxes", 0, "xyxy"], [10, 10, 20, 400]), "boxes[0].xyxy", "outside the frame"),
    ("stvg rec", _set(["boxes", 0, "xyxy"], [10, float("nan"), 20, 40]), "boxes[0].xyxy", "finite"),
    ("stvg rec", _set(["boxes", 0, "xyxy"], [10, 10, 20]), "boxes[0].xyxy", "[x0, y0, x1, y1]"),
    ("stvg rec", _set(["boxes", 0, "xyxy"], None), "boxes[0].xyxy", "[x0, y0, x1, y1]"),
    ("stvg rec", _set(["boxes", 0], [1, 2, 3, 4]), "boxes[0]", "object"),
    ("stvg rec", _set(["boxes", 0, "t"], None), "boxes[0].t", "finite"),
    ("stvg", _set(["boxes", 1, "t"], 7.0), "boxes[1].t", "outside the span"),
    ("stvg", _set(["boxes", 0, "t"], 0.2), "boxes[0].t", "outside the span"),
    ("rec", _set(["boxes", 0, "t"], 1.0), "boxes[0].t", "t = 0"),
    ("rec", _set(["span"], [0.0, 1.0]), "span", "absent"),
    ("rec", lambda r: r["boxes"].append({"t": 0.0, "xyxy": [1, 1, 5, 5]}), "boxes", "exactly one"),
    ("vtg", _set(["boxes"], [{"t": 1.0, "xyxy": [1, 1, 5, 5]}]), "boxes", "no boxes"),
]


def _cases():
    cases = []
    for tasks, mutate, field, words in MUTATIONS:
        for task in tasks.split():
            cases.append((task, [(mutate, field, words)]))
    rng = random.Random(0)
    # Records with 2-3 independent faults at once (at most one about time or geometry, since those checks
    # depend on each other, and at most one per top-level field): every fault must be reported.
    geometry = ("span", "clip", "duration", "fps", "width", "height", "boxes")
    while len(cases) < 260:
        task = rng.choice(list(BASES))
        pool = [m for m in MUTATIONS if task in m[0].split() and m[2] not in ("id", "task")]
        chosen = rng.sample(pool, rng.randint(2, 3))
        tops = [c[2].split("[")[0].split(".")[0].split("/")[0].replace("image", "video") for c in chosen]
        if len(set(tops)) == len(tops) and sum(t in geometry for t in tops) <= 1:
            cases.append((task, [(m, f, w) for _, m, f, w in chosen]))
    return cases


CASES = _cases()


def test_at_least_200_malformed_records():
    assert len(CASES) >= 200


@pytest.mark.parametrize("i", range(len(CASES)))
def test_malformed_record_rejected_by_id_and_field(i):
    task, faults = CASES[i]
    record = BASES[task]()
    record["id"] = f"case{i}"
    for mutate, _, _ in faults:
        mutate(record)
    problems = validate_record(record)
    assert problems, f"case {i} ({task}) accepted"
    for _, field, words in faults:
        hits = [p for p in problems if f"field={field}:" in p and words in p]
        assert hits, f"case {i}: no problem naming field {field!r} with {words!r}; got {problems}"
    rid = record.get("id") if isinstance(record.get("id"), str) and record.get("id") else "?"
    assert all(p.startswith(f"id={rid} ") for p in problems)


@pytest.mark.parametrize("garbage", [None, 3, "text", [1, 2], {"id": None}, {"id": True, "task": None}])
def test_garbage_never_crashes(garbage):
    assert validate_record(garbage)


def test_data_root_link_escape(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    r = stvg()
    assert validate_record(r, data_root=root) == []
    r["video"] = "link/a.mp4"
    assert any("field=video:" in p and "escapes" in p for p in validate_record(r, data_root=root))


def _write_cases(path):
    with open(path, "w") as f:
        for i, (task, faults) in enumerate(CASES):
            record = BASES[task]()
            record["id"] = f"case{i}"
            for mutate, _, _ in faults:
                mutate(record)
            f.write(json.dumps(record) + "\n")
        f.write("{not json\n")
        f.write("[1, 2]\n")
        f.write(json.dumps(stvg()) + "\n")
        f.write(json.dumps(stvg()) + "\n")  # duplicate id


def test_validate_file_streams_and_counts(tmp_path):
    path = tmp_path / "bad.jsonl"
    _write_cases(path)
    report = validate_file(path)
    assert report.records == len(CASES) + 4
    assert report.bad_records == len(CASES) + 3  # the first s1 is valid, its duplicate is not
    assert any("line " + str(len(CASES) + 1) + ": invalid JSON" in p for p in report.problems)
    assert any("field=id: duplicate id" in p for p in report.problems)


def test_cli_validate_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(make()) for make in BASES.values()) + "\n")
    assert cli.main(["data", "validate", str(good)]) == 0
    assert "4 records, 0 bad" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    _write_cases(bad)
    # Through the real entry point, as a user runs it.
    out = subprocess.run(
        [sys.executable, "-m", "llava_st.cli", "data", "validate", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert f"{len(CASES) + 3} bad" in out.stdout
    assert "id=case0 field=id" not in out.stdout and "id=? field=id: missing" in out.stdout


def _bad_bytes_file(path):
    """One good record after a line of every kind of bad bytes (issue: each aborted the whole file)."""
    good = stvg()

    def line(**kw):
        return json.dumps({**good, **kw}).encode()

    lines = [
        b"\xef\xbb\xbf" + line(id="bom"),  # a BOM before the first (valid) record
        line(id="big", width=10**401),  # OverflowError before
        line(id="huge").replace(b'"width": 640', b'"width": ' + b"9" * 5000),  # beyond the 4,300-digit limit
        line(id="nul", video="v/a\x00b.mp4"),
        line(id="\ud800"),  # a lone surrogate (as a JSON escape)
        b'{"id": "raw", "task": "qa", "video": "\xed\xa0\x80.mp4"}',  # a surrogate as raw bytes: not UTF-8
        line(id="lat", caption="CAFE").replace(b"CAFE", b"caf\xe9"),  # a latin-1 byte
        b"[" * 100_000 + b"]" * 100_000,  # 100k-deep nesting
        line(id="deep", caption=None).replace(b"null", b"[" * 500 + b"]" * 500),
        line(id="last"),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def test_validate_file_survives_any_bytes_and_checks_every_line(tmp_path):
    path = tmp_path / "bytes.jsonl"
    n = _bad_bytes_file(path)
    report = validate_file(path, data_root=tmp_path)
    assert report.records == n and report.bad_records == n - 2  # "bom" and "last" are valid
    text = "\n".join(report.problems)
    text.encode("utf-8")  # every message printable
    for where, words in [
        ("line 2: id=big field=width:", "positive finite"),
        ("line 3: id=huge field=width:", "<integer of 5000 digits>"),
        ("line 4: id=nul field=video:", "NUL byte"),
        ("line 5: id=\\ud800 field=id:", "lone surrogate"),
        ("line 6:", "not UTF-8"),
        ("line 7:", "not UTF-8 text (byte 0xe9"),
        ("line 8:", "nested deeper"),
        ("line 9: id=deep field=caption:", "non-empty string"),
    ]:
        assert any(p.startswith(f"{path}: {where}") and words in p for p in report.problems), (where, report.problems)
    assert not any("line 1:" in p or "line 10:" in p for p in report.problems)


def test_validate_reads_a_json_list_file(tmp_path):
    records = [make() for make in BASES.values()] + ["not a record"]
    path = tmp_path / "list.json"
    path.write_text("\ufeff" + json.dumps(records, indent=2))
    report = validate_file(path)
    assert report.records == 5 and report.bad_records == 1
    assert report.problems == [f"{path}: record 5: a record must be a JSON object, got str"]
    # A JSONL file whose first line happens to be an array is still JSONL.
    jsonl = tmp_path / "first_is_array.jsonl"
    jsonl.write_text("[1, 2]\n" + json.dumps(stvg()) + "\n")
    report = validate_file(jsonl)
    assert report.records == 2 and report.problems == [f"{jsonl}: line 1: a record must be a JSON object, got list"]


def test_cli_validate_file_level_problems_name_the_file(tmp_path):
    from llava_st.data.jsonl import DataFileError

    (tmp_path / "dir.jsonl").mkdir()
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes(json.dumps(stvg()).encode("utf-16"))
    broken_list = tmp_path / "broken.json"
    broken_list.write_text('[{"id": 1},\n {"id": ')
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(stvg()) + "\n")
    for path, words in [
        (tmp_path / "missing.jsonl", "file not found"),
        (tmp_path / "dir.jsonl", "is a directory"),
        (utf16, "UTF-16"),
        (broken_list, "invalid JSON list"),
    ]:
        with pytest.raises(DataFileError, match=words) as info:
            validate_file(path)
        assert str(info.value).startswith(str(path))
    if os.geteuid() != 0:
        locked = tmp_path / "locked.jsonl"
        locked.write_text("{}\n")
        locked.chmod(0)
        with pytest.raises(DataFileError, match="permission denied"):
            validate_file(locked)
    files = [good, tmp_path / "missing.jsonl", tmp_path / "dir.jsonl", utf16, broken_list]
    out = subprocess.run([sys.executable, "-m", "llava_st.cli", "data", "validate", *map(str, files)], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert f"{tmp_path / 'missing.jsonl'}: file not found" in out.stdout and "UTF-16" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "total: 1 records, 0 bad, 4 unreadable file(s) of 5"


def test_cli_validate_bad_bytes_exit_1_with_a_count(tmp_path):
    path = tmp_path / "bytes.jsonl"
    n = _bad_bytes_file(path)
    out = subprocess.run(
        [sys.executable, "-m", "llava_st.cli", "data", "validate", str(path), "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == f"{path}: {n} records, {n - 2} bad"
