"""Fuzz tests (hypothesis, fixed seed) over the validator, the eval loader and its resume, both hosts'
training datasets (the LLaVA-NeXT one at load, with upstream installed) and every converter.

The properties run on generated records, lines of arbitrary bytes, JSON list files, prediction files,
training record lists of both hosts (1,160 examples in all per run) and official-format annotation files
of every converter with valid and corrupted entries (560 examples: 70 for each of HC-STVG v1/v2, VidSTG
with a VidOR folder, VidSTG TubeDETR form, Charades-STA with its durations csv, DiDeMo, TACoS, RefCOCO*),
derandomized, so CI sees the same cases every time. They assert that no exception escapes (a converter:
but one ConvertInputError naming a file that is not the expected top-level type), that every input record
or entry is accounted for (kept, or rejected naming its file and line or its id and field; a converter's
records pass the validator and its entries without a fault are converted whatever the others hold), and
that no file outside the data root is ever opened: the data root holds symbolic links to a directory
beside it, and an audit hook records every file Python opens while a property runs. The last test checks
that the generated cases reached every kind of input and prints their counts.
"""

import copy
import csv
import functools
import json
import operator
import random
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llava_st.data.convert import CONVERTERS, Drops
from llava_st.data.convert.common import ConvertInputError
from llava_st.data.jsonl import DataFileError, iter_records
from llava_st.data.paths import resolve_media, show_id
from llava_st.data.schema import validate_file, validate_record
from llava_st.eval import drivers as D


def fuzz(examples: int):
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ opened files, data root

_OPENED: list = []
_WATCH = [False]
SEEN = Counter()  # what the properties met, checked by the last test so that the fuzz is never vacuous


def _audit(event, args):
    if _WATCH[0] and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(args[0])


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    """(root, outside): a data root with a real file, links inside it and links leading out of it."""
    base = tmp_path_factory.mktemp("fuzz")
    root, outside = base / "root", base / "outside"
    (root / "v").mkdir(parents=True)
    outside.mkdir()
    (root / "v" / "a.mp4").write_bytes(b"inside")
    (outside / "secret.mp4").write_bytes(b"outside")
    (root / "link").symlink_to(outside)
    (root / "alias.mp4").symlink_to(outside / "secret.mp4")
    (root / "inside.mp4").symlink_to(root / "v" / "a.mp4")
    (root / "up").symlink_to("..")
    return root, outside


class Watch:
    """Records the files Python opens inside the block; `outside(dir)` lists those under `dir`."""

    def __enter__(self):
        _OPENED.clear()
        _WATCH[0] = True
        return self

    def __exit__(self, *exc):
        _WATCH[0] = False

    @staticmethod
    def outside(directory: Path) -> list:
        found = []
        for p in list(_OPENED):
            try:
                text = p.decode("utf-8", "surrogateescape") if isinstance(p, bytes) else str(p)
                if "\x00" not in text and Path(text).resolve().is_relative_to(directory.resolve()):
                    found.append(text)
            except (OSError, RuntimeError, ValueError):
                pass
        return found


# ----------------------------------------------------------------------------------------- generators

SURROGATE_TEXT = st.text(st.characters(categories=["L", "N", "P", "S", "Z", "Cc", "Cs"]), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**420)
    | st.floats(allow_nan=True, allow_infinity=True)
    | SURROGATE_TEXT
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SURROGATE_TEXT, inner, max_size=3), max_leaves=8)
PATHS = st.sampled_from(
    ["v/a.mp4", "inside.mp4", "alias.mp4", "link/secret.mp4", "up/outside/secret.mp4", "../outside/secret.mp4",
     "v/../../outside/secret.mp4", "v/a\x00.mp4", "", "~/secret.mp4", "v/missing.mp4", "/etc/passwd"]
) | SURROGATE_TEXT


def _base(task: str) -> dict:
    turns = [{"from": "human", "value": "<image>\nWhere?"}, {"from": "gpt", "value": "From 1.0s to 3.0s."}]
    record = {"id": "x", "task": task, "video": "v/a.mp4", "caption": "the red box", "conversations": turns,
              "span": [1.0, 3.0], "boxes": [{"t": 1.0, "xyxy": [10, 10, 50, 40]}, {"t": 2.5, "xyxy": [12, 11, 52, 41]}],
              "width": 640, "height": 360, "duration": 20.0, "fps": 30.0, "sentence_type": "declarative"}
    if task == "vtg":
        for key in ("boxes", "width", "height", "fps"):
            del record[key]
    if task == "rec":
        record["image"] = record.pop("video")
        record["boxes"] = [{"t": 0.0, "xyxy": [1, 2, 30, 40]}]
        for key in ("span", "duration", "fps"):
            del record[key]
    if task == "qa":
        record = {"id": "x", "task": "qa", "video": "v/a.mp4", "conversations": turns}
    return record


FIELDS = ["id", "task", "video", "image", "caption", "span", "boxes", "width", "height", "duration", "fps", "clip",
          "conversations", "sentence_type", "annotator_spans"]
NESTED = [("span", 0), ("span", 1), ("boxes", 0, "t"), ("boxes", 0, "xyxy"), ("boxes", 0, "xyxy", 2), ("boxes", 1),
          ("conversations", 0, "value"), ("conversations", 1, "from"), ("conversations", 0)]


@st.composite
def records(draw, tasks=("stvg", "vtg", "rec", "qa")):
    """A valid record of a random task with 0-3 random faults: a field set to any JSON value (huge ints,
    NaN, lone surrogates, nesting), deleted, a nested value replaced, or a media path from PATHS."""
    record = _base(draw(st.sampled_from(tasks)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["set", "del", "nested", "path", "path"]))
        if kind == "set":
            record[draw(st.sampled_from(FIELDS))] = draw(VALUES)
        elif kind == "del":
            record.pop(draw(st.sampled_from(FIELDS)), None)
        elif kind == "path":
            record["image" if "image" in record else "video"] = draw(PATHS)
        else:
            *keys, last = draw(st.sampled_from(NESTED))
            target = record
            try:
                for key in keys:
                    target = target[key]
                target[last] = draw(VALUES)
            except (KeyError, IndexError, TypeError):
                pass
    return record


def _dump(record, raw_surrogates: bool) -> bytes:
    if raw_surrogates:  # a lone surrogate as raw bytes: not UTF-8
        return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(record).encode()


SPECIAL_LINES = st.sampled_from(
    [b"{not json", b"[1, 2]", b"null", b'"text"', b"\xef\xbb\xbf{}", b'{"id": "big", "width": ' + b"9" * 5000 + b"}",
     b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 3000 + b"1" + b"}" * 3000, b"caf\xe9", b"\xff\xfe\x00", b"{}"]
)


@st.composite
def lines(draw, tasks=("stvg", "vtg", "rec", "qa")):
    """One line's bytes: a (faulty) record, arbitrary bytes or a known-bad line."""
    kind = draw(st.sampled_from(["record", "record", "record", "bytes", "special"]))
    if kind == "record":
        return _dump(draw(records(tasks)), draw(st.booleans()))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    return draw(SPECIAL_LINES)


# ------------------------------------------------------------------------------------------ validator


@fuzz(500)
@given(record=records())
def test_validate_record_never_raises_and_names_id_and_field(jail, record):
    root, outside = jail
    with Watch():
        problems = validate_record(record, data_root=root)
    assert not Watch.outside(outside)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    SEEN["validator examples"] += 1
    SEEN["records accepted" if not problems else "records rejected"] += 1
    SEEN.update(f"field {m}" for p in problems for m in re.findall(r" field=([a-z_]+)", p))
    for p in problems:
        p.encode("utf-8")  # printable anywhere
        assert p.startswith("id=") and " field=" in p, p
    if not problems:  # accepted: its media path really lies inside the root
        key = "image" if "image" in record else "video"
        assert resolve_media(root, record[key], record["id"], key).is_relative_to(root.resolve())


def _expected_jsonl_entries(data: bytes) -> int:
    parts = data.split(b"\n")
    if parts and parts[0].startswith(b"\xef\xbb\xbf"):
        parts[0] = parts[0][3:]
    return sum(1 for part in parts if part.strip())


def _check_report(path: Path, report, entries) -> None:
    """Every entry is accounted for: good, or at least one message naming file and line/record."""
    assert report.records == len(entries)
    bad = 0
    for where, _, _ in entries:
        mine = [p for p in report.problems if p.startswith(f"{path}: {where}: ")]
        bad += bool(mine)
    assert bad == report.bad_records
    assert all(p.startswith(f"{path}: line ") or p.startswith(f"{path}: record ") for p in report.problems)
    for p in report.problems:
        p.encode("utf-8")


@fuzz(200)
@given(body=st.lists(lines(), min_size=1, max_size=8), bom=st.booleans())
def test_validate_file_of_any_bytes_checks_every_line(jail, body, bom):
    root, outside = jail
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(body) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_bytes(data)
        with Watch():
            try:
                report = validate_file(path, data_root=root)
            except DataFileError as exc:  # the file as a whole: named
                assert str(exc).startswith(str(path))
                SEEN["files refused"] += 1
                return
            entries = list(iter_records(path))
        assert not Watch.outside(outside)
        if entries and entries[0][0].startswith("line"):
            assert len(entries) == _expected_jsonl_entries(data)
        _check_report(path, report, entries)
        SEEN["validator examples"] += 1
        SEEN["lines"] += len(entries)
        SEEN["lines not records"] += sum(error is not None for _, _, error in entries)


@fuzz(100)
@given(items=st.lists(records() | VALUES, max_size=6), bom=st.booleans())
def test_validate_json_list_file_checks_every_record(jail, items, bom):
    root, outside = jail
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.json"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + json.dumps(items, indent=1).encode())
        with Watch():
            report = validate_file(path, data_root=root)
            entries = list(iter_records(path))
        assert not Watch.outside(outside)
        assert [where for where, _, _ in entries] == [f"record {n}" for n in range(1, len(items) + 1)]
        _check_report(path, report, entries)
        SEEN["validator examples"] += 1


# ------------------------------------------------------------------------------------ eval load/resume


class FakeGrounder:
    """Grounder interface without a model: opens the file it is given (as a real one decodes it) and
    answers one fixed tube per description."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.paths, self.outside = [], []

    def _tubes(self, path, descriptions, span):
        if not Path(path).resolve().is_relative_to(self.root):  # recorded: the driver catches what a grounder raises
            self.outside.append(path)
        with open(path, "rb") as f:  # FileNotFoundError for a missing file: the driver's to record
            f.read(1)
        self.paths.append(path)
        frame = {"t": 0.5, "box_xyxy": [1.0, 1.0, 5.0, 5.0], "box_norm": [0.0, 0.0, 0.1, 0.1]}
        video = {"path": str(path), "width": 640, "height": 360, "duration": 20.0, "fps": 30.0}
        return [{"query": d, "span": span, "frames": [frame], "video": video, "raw_text": "x", "status": "ok"} for d in descriptions]

    def ground(self, video_path, descriptions, frames=None):
        return self._tubes(video_path, descriptions, [1.0, 2.0])

    def ground_image(self, image_path, descriptions):
        return self._tubes(image_path, descriptions, [0.0, 0.0])


TASK_OF = {"vidstg": "stvg", "hcstvg-v1": "stvg", "charades-sta": "vtg", "didemo": "vtg", "refcoco": "rec"}
ROWS = st.one_of(
    VALUES,
    st.fixed_dictionaries(
        {
            "id": st.sampled_from([f"e{i}" for i in range(6)]) | VALUES,
            "status": st.sampled_from(["ok", "error: x", "bad record: y"]) | VALUES,
            "tube": st.none() | VALUES | st.fixed_dictionaries({"span": VALUES, "frames": VALUES}),
        }
    ),
)


@fuzz(200)
@given(data=st.data(), benchmark=st.sampled_from(sorted(TASK_OF)), garbage=st.lists(ROWS, max_size=4))
def test_eval_load_predict_resume_account_for_every_record(jail, data, benchmark, garbage):
    root, outside = jail
    task = TASK_OF[benchmark]
    body = []
    for i in range(data.draw(st.integers(1, 6))):
        if data.draw(st.integers(0, 4)):
            record = data.draw(records(tasks=(task, task, "qa")))
            if data.draw(st.integers(0, 4)):
                record["id"] = f"e{i}"
            body.append(_dump(record, data.draw(st.booleans())))
        else:
            body.append(data.draw(lines()))
    with tempfile.TemporaryDirectory() as tmp:
        test_file, out = Path(tmp) / "test.jsonl", Path(tmp) / "out"
        test_file.write_bytes(json.dumps(_base(task) | {"id": "first"}).encode() + b"\n" + b"\n".join(body) + b"\n")
        out.mkdir()
        (out / "predictions.rank0-of-1.jsonl").write_text("".join(json.dumps(row) + "\n" for row in garbage))
        grounder = FakeGrounder(root)
        with Watch():
            result = D.evaluate(grounder, D.BENCHMARKS[benchmark], {"test": test_file}, root, out, progress=False)
        assert not Watch.outside(outside)
        assert grounder.outside == []  # the driver hands a grounder only paths inside the root
        samples = D.load_records(test_file)
        assert result["counts"]["samples"] == len(samples) == 1 + _expected_jsonl_entries(b"\n".join(body))
        assert json.loads((out / "metrics.json").read_text()) == result
        rows = D.merge_predictions(out)
        earlier = {g["id"] for g in garbage if D.row_problem(g) is None}  # well-formed rows of an "earlier run"
        ids = [str(record["id"]) for record in samples]
        for record, rid in zip(samples, ids):
            row = rows[rid]  # every record has a row: kept or rejected
            if rid in earlier or ids.count(rid) > 1:
                continue
            if row["status"].startswith("bad record: "):
                assert "field=" in row["status"] or ": line " in row["status"], row["status"]
            elif row["tube"] is not None:
                assert D.record_problem(record, task, root) is None  # kept only when valid, media inside the root
            SEEN["eval " + ("bad record" if row["status"].startswith("bad record") else row["status"].split(":")[0])] += 1
            SEEN["eval path escapes"] += "escapes the data root" in row["status"]
        SEEN["eval examples"] += 1
        SEEN["eval prediction rows ignored"] += sum(D.row_problem(g) is not None for g in garbage)
        # A second run resumes: nothing is predicted again, the metrics are the same.
        again = FakeGrounder(root)
        assert D.evaluate(again, D.BENCHMARKS[benchmark], {"test": test_file}, root, out, progress=False) == result
        assert again.paths == []


# ------------------------------------------------------------------------- transformers training data


@pytest.fixture(scope="module")
def hf_data(jail, moving_box_video, qwen_tokenizer):
    """(root, outside, processor): the jail with a real video at v/box.mp4 and a tiny ST processor."""
    import shutil

    from llava_st.core.config import STConfig
    from llava_st.testing.hf import build_tiny_st

    root, outside = jail
    shutil.copy(moving_box_video[0], root / "v" / "box.mp4")
    _, processor = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8))
    return root, outside, processor


@fuzz(100)
@given(items=st.lists(records() | VALUES, min_size=1, max_size=5), data=st.data())
def test_hf_training_dataset_drops_or_trains_every_record(hf_data, items, data):
    from llava_st.hosts.hf.data import STDataset

    root, outside, processor = hf_data
    good = {**_base("stvg"), "id": "good", "video": "v/box.mp4", "width": 96, "height": 64, "duration": 4.0, "fps": 10.0,
            "span": [1.0, 2.9], "boxes": [{"t": 1.0, "xyxy": [10, 10, 40, 40]}],
            "conversations": [{"from": "human", "value": "<image>\nWhen and where is the red box?"}, {"from": "gpt", "value": "-"}]}
    records = items + ([good] if data.draw(st.booleans()) else [])
    with Watch():
        try:
            dataset = STDataset(records, root, processor, frames=4, seed=0)
        except ValueError as exc:  # nothing usable at all: one message with the counts
            assert "no usable training record" in str(exc)
            SEEN["hf datasets refused"] += 1
            return
        assert len(dataset) + len(dataset.bad.entries) == len(records)  # every record kept or dropped by id
        for i in {0, len(dataset) - 1}:
            try:
                item = dataset[i]
                assert "input_ids" in item
                SEEN["hf items"] += 1
            except RuntimeError as exc:  # every kept sample failed when read
                assert "could be used" in str(exc)
    assert not Watch.outside(outside)
    SEEN["hf examples"] += 1
    SEEN["hf dropped"] += len(dataset.bad.entries)



@pytest.mark.upstream
@fuzz(60)
@given(items=st.lists(records() | VALUES, min_size=1, max_size=5))
def test_llava_next_training_dataset_keeps_or_drops_every_record(jail, qwen_tokenizer, items):
    """The LLaVA-NeXT host's dataset at load: every record kept or dropped (by id, counted by kind), links
    out of --video_folder/--image_folder never followed."""
    from test_train_upstream_data import data_args

    from llava_st.hosts.llava_next.data import GroundingDataset

    root, outside = jail
    good = {**_base("qa"), "id": "good"}
    records = items + [good]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.json"
        path.write_text(json.dumps(records))
        with Watch():
            dataset = GroundingDataset(str(path), qwen_tokenizer, data_args(root))
        assert not Watch.outside(outside)
    assert len(dataset) + len(dataset.bad.entries) == len(records)
    assert set(dataset.bad.counts) <= {"invalid record", "path outside data root"}
    SEEN["llava_next examples"] += 1
    SEEN["llava_next dropped"] += len(dataset.bad.entries)


# ----------------------------------------------------------------------------------------- converters

FRAME_JUNK = st.sampled_from([-1, -268, 0, 1, 2.7, 5.5, 1e9, 10**30, 10**400, float("nan"), float("inf"), float("-inf"), True, False,
                              "268", "", " ", [], {}, None, [[1, 2, 3]], [1, 2, -3, 4], "../outside/secret.mp4",
                              "/etc/passwd"]).map(copy.deepcopy)
JUNK = VALUES | FRAME_JUNK | st.integers(-10, 10**8)
ID_JUNK = (st.none() | st.booleans() | st.integers(-5, 10**18) | st.floats() | st.lists(st.integers(), max_size=2) | st.just({})
           | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8))


def one_in(draw, n: int) -> bool:
    """True about 1 time in n (st.integers and st.sampled_from favour their first values, st.randoms 0.0)."""
    return random.Random(draw(st.integers(0, 2**32 - 1))).random() * n < 1


def _paths(value, prefix=()) -> list:
    """Every path (a tuple of keys and indices) into the nested dicts and lists of `value`."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    out = []
    for key, inner in list(items):
        out.append(prefix + (key,))
        out.extend(_paths(inner, prefix + (key,)))
    return out


def _cut(value, k: int) -> None:
    for inner in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _cut(inner, k)
    if isinstance(value, list):
        del value[k:]


def corrupt(draw, entry, id_keys=(), keep=()):
    """(a copy of the valid official-format `entry` with 0-3 faults, the number of faults): a value at any
    depth set to junk (wrong types, NaN/inf, huge or negative or non-integral numbers, nesting, bad paths),
    deleted (a missing key, a list one shorter) or emptied (a list or object), every list cut short, or the
    whole entry replaced by junk (often no object).
    Keys in `id_keys` get ids of any type instead; keys in `keep` are left alone."""
    entry = copy.deepcopy(entry)
    faults = draw(st.sampled_from(range(4)))
    if faults and one_in(draw, 8):
        return draw(JUNK), faults
    for _ in range(faults):
        if one_in(draw, 6):  # every list of the entry cut to its first 0 or 1 items (no sentence, no box, ...)
            _cut(entry, draw(st.sampled_from([0, 1])))
            continue
        paths = [p for p in _paths(entry) if p[-1] not in keep]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = functools.reduce(operator.getitem, path[:-1], entry)
        if one_in(draw, 4):
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], (list, dict)) and one_in(draw, 3):
            parent[path[-1]] = type(parent[path[-1]])()  # emptied: no boxes, no sentences, no frames
        else:
            parent[path[-1]] = draw(ID_JUNK if path[-1] in id_keys else JUNK)
    return entry, faults


def _parses_to(data: bytes, ok) -> bool:
    try:
        return bool(ok(json.loads(data)))
    except Exception:  # noqa: BLE001 - anything json refuses (RecursionError included)
        return False


GARBAGE_FILES = st.sampled_from([b"", b"{not json", b"\xff\xfe\x00g\x00", b"[" * 100_000, b"caf\xe9", b'{"a": ' * 3000])
GARBAGE_FILES |= st.binary(max_size=20)


def _write_json(draw, path: Path, obj, ok) -> list:
    """Write `obj` as JSON to `path`, or (1 in 12) something that is not the expected top-level type
    (junk of another type, bytes that are no JSON); returns [path] when so (a ConvertInputError is due)."""
    kind = one_in(draw, 12) and draw(st.sampled_from(["junk", "bytes"]))
    if kind == "junk":
        obj = draw(JUNK.filter(lambda v: not ok(v)))
    if kind == "bytes":
        path.write_bytes(draw(GARBAGE_FILES.filter(lambda b: not _parses_to(b, ok))))
        return [path]
    path.write_text(json.dumps(obj))  # NaN / Infinity as JSON's extensions, lone surrogates escaped
    return [] if ok(obj) else [path]


def _is_key_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


@dataclass
class ConvertCase:
    """What one generated input should give: `keys[k]` are the ids entry k's records and drops may have
    (or start with, followed by "_" or " "); `pristine` the record ids of entries without a fault, which
    must come out whatever the other entries hold; `broken` the files that are not the expected top-level
    type (then one ConvertInputError naming one of them); `one_each`: exactly one record or drop per
    entry; `other`: drop ids of things that are no entry (a csv row, a COCO image)."""

    kwargs: dict
    keys: list
    pristine: list = dc_field(default_factory=list)
    broken: list = dc_field(default_factory=list)
    one_each: bool = True
    other: Callable = lambda rid: False


def _owns(key: str, rid: str) -> bool:
    return rid == key or rid.startswith(key + "_") or rid.startswith(key + " ")


HC_ENTRY = {"bbox": [[100, 50, 40, 80], [102, 51, 40, 80], [104, 52, 40, 80]], "st_time": 8.91, "ed_time": 9.1, "img_num": 600,
            "caption": "The woman in red clothes turns in a circle.", "width": 640, "height": 360, "st_frame": 268}
HC2_ENTRY = {**{k: v for k, v in HC_ENTRY.items() if k not in ("caption", "width", "height")}, "English": "A man sits.",
             "img_size": [360, 640]}


def _hcstvg(version: int):
    def make(draw, folder: Path) -> ConvertCase:
        entries, keys, pristine = {}, [], []
        for i in range(draw(st.integers(1, 6))):
            entries[f"c{i}.mp4"], faults = corrupt(draw, HC_ENTRY if version == 1 else HC2_ENTRY)
            keys.append([f"c{i}.mp4", f"hcstvg-v{version}_c{i}"])
            if not faults:
                pristine.append(f"hcstvg-v{version}_c{i}")
        ann = folder / "ann.json"
        broken = _write_json(draw, ann, entries, lambda d: isinstance(d, dict))
        return ConvertCase({"ann": str(ann)}, keys, pristine, broken)

    return make


def _vidor_file(vid: str) -> dict:
    trajectories = []
    for f in range(12):
        boxes = [{"tid": 0, "bbox": {"xmin": 10 + f, "ymin": 20, "xmax": 50 + f, "ymax": 60}}]
        if 5 <= f < 9:
            boxes.append({"tid": 1, "bbox": {"xmin": 0, "ymin": 0, "xmax": 700, "ymax": 30}})
        trajectories.append(boxes)
    return {"video_id": vid, "video_path": f"0000/{vid}.mp4", "trajectories": trajectories}


VIDSTG_ENTRY = {"vid": "v1", "fps": 10, "frame_count": 12, "width": 640, "height": 480, "used_segment": {"begin_fid": 2, "end_fid": 11},
                "temporal_gt": {"begin_fid": 5, "end_fid": 9}, "subject/objects": [{"tid": 0, "category": "adult"}],
                "captions": [{"description": "An adult walks.", "type": "adult", "target_id": 0}],
                "questions": [{"description": "What is beside the adult?", "type": "dog", "target_id": 1}]}


def _vidstg(draw, folder: Path) -> ConvertCase:
    vidor = folder / "vidor"
    (vidor / "0000").mkdir(parents=True)
    (vidor / "0000" / "v1.json").write_text(json.dumps(_vidor_file("v1")))
    outside = folder.parent.parent / "outside"  # the jail's: a VidOR file of v1 there must never be read
    (outside / "v1.json").write_text(json.dumps({**_vidor_file("v1"), "video_path": "../outside/secret.mp4"}))
    (vidor / "link").symlink_to(outside)  # a folder link out: never walked into
    for j in range(draw(st.integers(0, 2))):  # corrupted VidOR files: a bad box loses only its target's sentences
        path = vidor / "0000" / f"w{j}.json"
        if draw(st.integers(0, 3)):
            path.write_text(json.dumps(corrupt(draw, _vidor_file(f"w{j}"))[0]))
        else:
            path.write_bytes(draw(GARBAGE_FILES))
    entries, keys, pristine = [], [], []
    for i in range(draw(st.integers(1, 5))):
        vid = draw(st.sampled_from(["v1", "v1", "w0", "w1", "nowhere", "../outside/secret"]))
        entry, faults = corrupt(draw, {**VIDSTG_ENTRY, "vid": vid})
        entries.append(entry)
        keys.append([f"vidstg[{i}]", f"vidstg_{i}"])
        if not faults and vid == "v1":
            pristine += [f"vidstg_{i}_v1_d0", f"vidstg_{i}_v1_i0"]
    ann = folder / "ann.json"
    broken = _write_json(draw, ann, entries, lambda d: isinstance(d, list))
    return ConvertCase({"ann": str(ann), "vidor_dir": str(vidor)}, keys, pristine, broken, one_each=False)


TD_ENTRY = {"original_video_id": "v1", "frame_count": 20, "fps": 10, "width": 640, "height": 480, "start_frame": 2, "end_frame": 18,
            "tube_start_frame": 5, "tube_end_frame": 9, "video_path": "0000/v1.mp4", "caption": "What is beside the adult?",
            "target_id": 1, "video_id": 0, "qtype": "interrogative"}
TD_TRACK = {"1": {str(f): {"bbox": [10, 20, 30, 40]} for f in range(5, 9)}}


def _vidstg_tubedetr(draw, folder: Path) -> ConvertCase:
    trajectories = {"v1": TD_TRACK}
    for j in range(draw(st.integers(0, 2))):
        trajectories[f"t{j}"] = corrupt(draw, TD_TRACK)[0]
    videos, keys, pristine = [], [], []
    for i in range(draw(st.integers(1, 6))):
        ovid = draw(st.sampled_from(["v1", "v1", "t0", "t1", "gone"]))
        entry, faults = corrupt(draw, {**TD_ENTRY, "video_id": 1000 + i, "original_video_id": ovid}, id_keys=("video_id",))
        videos.append(entry)
        vid = entry.get("video_id") if isinstance(entry, dict) else None
        keys.append([f"vidstg-tubedetr[{i}]"] + ([f"vidstg_{vid}"] if _is_key_id(vid) else []))
        if not faults and ovid == "v1":
            pristine.append(f"vidstg_{1000 + i}")
    data = {"videos": videos, "trajectories": trajectories}
    if one_in(draw, 16):
        key = draw(st.sampled_from(["videos", "trajectories"]))
        data[key] = draw(JUNK.filter(lambda v: not isinstance(v, list if key == "videos" else dict)))
    ann = folder / "tubedetr.json"
    ok = lambda d: isinstance(d, dict) and isinstance(d.get("videos"), list) and isinstance(d.get("trajectories"), dict)  # noqa: E731
    return ConvertCase({"ann": str(ann)}, keys, pristine, _write_json(draw, ann, data, ok))


CHARADES_TOKENS = st.sampled_from(["AAAAA", "BBBBB", "CCCCC", "ZZZZZ", "1.0", "5.0", "inf", "nan", "-1.0", "1e400", "2.7", "abc", "",
                                   "##", "#", "\t", "\r"]) | SURROGATE_TEXT


@st.composite
def charades_lines(draw) -> bytes:
    kind = draw(st.sampled_from(["good", "tokens", "tokens", "bytes"]))
    if kind == "good":
        start = draw(st.integers(0, 20))
        return f"AAAAA {start}.0 {start + draw(st.integers(1, 30))}.5##person opens a door.".encode()
    if kind == "bytes":
        return draw(st.binary(max_size=30))
    head = " ".join(draw(st.lists(CHARADES_TOKENS, max_size=5)))
    tail = draw(st.sampled_from(["##", "#", "", "## "])) + draw(SURROGATE_TEXT | st.just("person runs."))
    return (head + tail).encode("utf-8", "surrogatepass")


def _charades(draw, folder: Path) -> ConvertCase:
    durations, broken = folder / "Charades_v1_test.csv", []
    if not one_in(draw, 24):
        rows = [("AAAAA", "30.0")] + draw(st.lists(st.tuples(
            st.sampled_from(["BBBBB", "CCCCC", "DDDDD"]) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6),
            st.sampled_from(["30", "abc", "inf", "-3", "nan", "", "1e400", "0", "2.5"]) | SURROGATE_TEXT.map(ascii)), max_size=4))
        with open(durations, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "subject", "length"])
            writer.writerows((vid, "x", length) for vid, length in rows)
    else:
        durations.write_bytes(draw(st.sampled_from([b"id,length\n\xff\xfe1,2\n", b"no,columns\n1,2\n", b""])))
        broken = [durations]
    body = b"\n".join(draw(st.lists(charades_lines(), min_size=1, max_size=8)))
    ann = folder / "charades_sta_test.txt"
    ann.write_bytes(body)
    keys, pristine = [], []
    for n, raw in enumerate(body.split(b"\n"), 1):
        try:
            if not raw.decode("utf-8").strip():
                continue
        except UnicodeDecodeError:
            pass
        keys.append([f"charades_{n}"])
        if raw.startswith(b"AAAAA ") and raw.endswith(b"##person opens a door."):
            pristine.append(f"charades_{n}_AAAAA")
    return ConvertCase({"ann": str(ann), "durations": str(durations)}, keys, pristine, broken, other=lambda rid: rid.startswith("row "))


DIDEMO_ENTRY = {"num_segments": 6, "description": "a girl jumps", "times": [[1, 4], [1, 4], [2, 4]], "video": "good.mov",
                "annotation_id": 0, "dl_link": "http://example.com/x"}


def _didemo(draw, folder: Path) -> ConvertCase:
    kwargs, broken = {}, []
    if draw(st.booleans()):
        lengths = {"good.mov": 30.0, **{f"d{j}.mov": draw(JUNK) for j in range(draw(st.integers(0, 2)))}}
        kwargs["durations"] = str(folder / "durations.json")
        broken += _write_json(draw, folder / "durations.json", lengths, lambda d: isinstance(d, dict))
    entries, keys, pristine = [], [], []
    for i in range(draw(st.integers(1, 6))):
        video = draw(st.sampled_from(["good.mov", "good.mov", "d0.mov", "d1.mov", "nodur.mov"]))
        entry, faults = corrupt(draw, {**DIDEMO_ENTRY, "annotation_id": 1000 + i, "video": video}, id_keys=("annotation_id",))
        entries.append(entry)
        aid = entry.get("annotation_id") if isinstance(entry, dict) else None
        keys.append([f"didemo[{i}]"] + ([f"didemo_{aid}"] if _is_key_id(aid) else []))
        if not faults and video in ("good.mov", "nodur.mov"):
            pristine.append(f"didemo_{1000 + i}")
    ann = folder / "didemo.json"
    broken += _write_json(draw, ann, entries, lambda d: isinstance(d, list))
    return ConvertCase({"ann": str(ann), **kwargs}, keys, pristine, broken)


TACOS_ENTRY = {"timestamps": [[141, 354], [10, 20]], "sentences": ["He takes a knife.", "He cuts."], "fps": 29.4, "num_frames": 7346}


def _tacos(draw, folder: Path) -> ConvertCase:
    entries, keys, pristine = {}, [], []
    for i in range(draw(st.integers(1, 5))):
        entries[f"t{i}.avi"], faults = corrupt(draw, TACOS_ENTRY)
        keys.append([f"tacos_t{i}"])
        if not faults:
            pristine += [f"tacos_t{i}_0", f"tacos_t{i}_1"]
    ann = folder / "tacos.json"
    broken = _write_json(draw, ann, entries, lambda d: isinstance(d, dict))
    return ConvertCase({"ann": str(ann)}, keys, pristine, broken, one_each=False)


REF_ENTRY = {"ref_id": 0, "ann_id": 10, "image_id": 5, "split": "train", "category_id": 1, "sent_ids": [1, 2],
             "sentences": [{"sent_id": 1, "sent": "left man", "tokens": ["left", "man"]}, {"sent_id": 2, "sent": "the man on the left"}]}


def _refcoco(draw, folder: Path) -> ConvertCase:
    dataset = draw(st.sampled_from(["refcoco", "refcoco+", "refcocog"]))
    images = [{"id": 5, "file_name": "a.jpg", "width": 640, "height": 427}]
    annotations = [{"id": 10, "bbox": [10.5, 20.0, 100.0, 200.0], "image_id": 5}]
    for j in range(draw(st.integers(0, 2))):
        images.append(corrupt(draw, {"id": 100 + j, "file_name": f"i{j}.jpg", "width": 640, "height": 427}, keep=("id",))[0])
        annotations.append(corrupt(draw, {"id": 200 + j, "bbox": [1.0, 2.0, 30.0, 40.0], "image_id": 100 + j}, keep=("id",))[0])
    coco = {"images": images, "annotations": annotations, "categories": []}
    if one_in(draw, 16):
        coco[draw(st.sampled_from(["images", "annotations"]))] = draw(JUNK.filter(lambda v: not isinstance(v, list)))
    instances = folder / "instances.json"
    ok = lambda d: isinstance(d, dict) and isinstance(d.get("images"), list) and isinstance(d.get("annotations"), list)  # noqa: E731
    broken = _write_json(draw, instances, coco, ok)
    refs, keys, pristine = [], [], []
    for i in range(draw(st.integers(1, 5))):
        image_id, ann_id = draw(st.sampled_from([(5, 10), (5, 10), (100, 200), (101, 201), (99, 10), (5, 199)]))
        entry, faults = corrupt(draw, {**REF_ENTRY, "ref_id": 1000 + i, "image_id": image_id, "ann_id": ann_id}, id_keys=("ref_id",))
        refs.append(entry)
        rid = entry.get("ref_id") if isinstance(entry, dict) else None
        keys.append([f"{dataset}[{i}]"] + ([f"{dataset}_{rid}"] if _is_key_id(rid) else []))
        if not faults and image_id == 5 and ann_id == 10:
            pristine += [f"{dataset}_{1000 + i}_1", f"{dataset}_{1000 + i}_2"]
    refs_path = folder / "refs(unc).json"
    broken += _write_json(draw, refs_path, refs, lambda d: isinstance(d, list))
    return ConvertCase({"refs": str(refs_path), "instances": str(instances), "dataset": dataset}, keys, pristine, broken,
                       one_each=False, other=lambda rid: re.fullmatch(r"(images|annotations)\[\d+\]", rid) is not None)


CONVERT_CASES = {"hcstvg-v1": _hcstvg(1), "hcstvg-v2": _hcstvg(2), "vidstg": _vidstg, "vidstg-tubedetr": _vidstg_tubedetr,
                 "charades-sta": _charades, "didemo": _didemo, "tacos": _tacos, "refcoco": _refcoco}


@pytest.mark.parametrize("dataset", sorted(CONVERT_CASES))
@fuzz(70)
@given(data=st.data())
def test_converter_accounts_for_every_entry(jail, dataset, data):
    """Official-format files of valid and corrupted entries: nothing escapes but one ConvertInputError
    naming a file that is not the expected top-level type; every record passes the validator; every entry
    has a record or a drop noted with its id; entries without a fault are converted whatever the others
    hold; no file outside the data folder is opened."""
    root, outside = jail
    fn, fixed = CONVERTERS[dataset]
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        case = CONVERT_CASES[dataset](data.draw, folder)
        drops = Drops()
        with Watch():
            try:
                records = list(fn(**{**fixed, **case.kwargs}, drops=drops))
            except ConvertInputError as exc:
                assert case.broken and any(str(exc).startswith(f"{p}: ") for p in case.broken), (str(exc), case.broken)
                assert "\n" not in str(exc)
                records = None
        opened = [p for p in Watch.outside(Path(tmp).parent) if not Path(p).resolve().is_relative_to(folder.resolve())]
    assert not opened, opened
    SEEN["converter examples"] += 1
    if records is None:
        SEEN["converter files refused"] += 1
        return
    assert not case.broken, f"{case.broken} read without a ConvertInputError"
    for r in records:
        assert validate_record(r) == [], (r["id"], validate_record(r))
    noted = []
    for reason, ids in drops.ids.items():
        assert len(ids) == drops[reason], reason  # every drop of an entry noted with its id
        noted += [i for i in ids if not case.other(i)]
    outcomes = [show_id(r["id"]) for r in records] + noted
    owners = [[k for k, keys in enumerate(case.keys) if any(_owns(show_id(key), o) for key in keys)] for o in outcomes]
    assert all(owners), [o for o, w in zip(outcomes, owners) if not w]
    assert {k for w in owners for k in w} == set(range(len(case.keys))), (case.keys, outcomes)  # every entry accounted for
    if case.one_each:
        assert len(outcomes) == len(case.keys), outcomes
    assert set(case.pristine) <= {r["id"] for r in records}, (case.pristine, outcomes, dict(drops))
    SEEN["converter records"] += len(records)
    SEEN["converter drops"] += len(noted)
    SEEN["converter pristine entries"] += len(case.pristine)


def test_the_fuzz_reached_every_kind_of_input():
    """The properties above ran >= 500 examples and met what they are about (skipped when run alone)."""
    if not all(SEEN[k] for k in ("validator examples", "eval examples", "hf examples", "converter examples")):
        pytest.skip("run with the properties above (the whole module)")
    print("fuzz cases:", dict(SEEN))
    assert SEEN["validator examples"] + SEEN["eval examples"] + SEEN["hf examples"] + SEEN["llava_next examples"] >= 500
    assert SEEN["converter examples"] >= 500
    for kind in ("records accepted", "records rejected", "field video", "field span", "field id", "field boxes", "lines not records",
                 "eval ok", "eval bad record", "eval error", "eval path escapes", "eval prediction rows ignored", "hf items", "hf dropped",
                 "converter records", "converter drops", "converter files refused", "converter pristine entries"):
        assert SEEN[kind] > 0, (kind, dict(SEEN))

