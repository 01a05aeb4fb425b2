"""Fuzz tests (hypothesis, fixed seed) over the validator, the eval loader and its resume, and both
hosts' training datasets (the LLaVA-NeXT one at load, with upstream installed).

The properties run on generated records, lines of arbitrary bytes, JSON list files, prediction files and
training record lists of both hosts (1,160 examples in all per run, derandomized, so CI sees the same
cases every time) and assert that no exception escapes, that every input record is accounted for (kept, or rejected naming
its file and line or its id and field), and that no file outside the data root is ever opened: the data
root holds symbolic links to a directory beside it, and an audit hook records every file Python opens
while a property runs. The last test checks that the generated cases reached every kind of input.
"""

import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llava_st.data.jsonl import DataFileError, iter_records
from llava_st.data.paths import resolve_media
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

    from llava_st.hosts.llava_next.dataset import GroundingDataset

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


def test_the_fuzz_reached_every_kind_of_input():
    """The properties above ran >= 500 examples and met what they are about (skipped when run alone)."""
    if not all(SEEN[k] for k in ("validator examples", "eval examples", "hf examples")):
        pytest.skip("run with the properties above (the whole module)")
    print("fuzz cases:", dict(SEEN))
    assert SEEN["validator examples"] + SEEN["eval examples"] + SEEN["hf examples"] + SEEN["llava_next examples"] >= 500
    for kind in ("records accepted", "records rejected", "field video", "field span", "field id", "field boxes", "lines not records",
                 "eval ok", "eval bad record", "eval error", "eval path escapes", "eval prediction rows ignored", "hf items", "hf dropped"):
        assert SEEN[kind] > 0, (kind, dict(SEEN))

