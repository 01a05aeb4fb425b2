"""Streaming JSON Lines: read one record at a time, append one record at a time, resume by id.

Nothing here loads a whole JSONL file: readers yield line by line and writers flush each line, so a killed
job leaves a valid prefix that `done_ids` can resume from.

Readers never raise on the bytes of one line: a line that is not UTF-8, not JSON (including numbers beyond
Python's digit limit and nesting deeper than the parser's), or not a JSON object yields its error (naming
the line) and the next line is read. A UTF-8 byte-order mark is skipped. Problems of the file itself (not
found, a directory, unreadable, UTF-16/32 or binary data) raise `DataFileError`, naming the file.
`iter_records` also reads a JSON list file (`[{...}, {...}]`, upstream LLaVA's format), numbering its
records from 1 like lines.
"""

import json
import os
from pathlib import Path
from typing import Iterator, Optional, Tuple

BOM = b"\xef\xbb\xbf"
# Integers longer than this parse as HugeInt (an infinite float) instead of failing: Python refuses to
# convert more than 4,300 digits, and no field of a record is a valid number beyond ~309 digits anyway.
MAX_INT_DIGITS = 4000


class DataFileError(ValueError):
    """A data file that cannot be read at all; the message names the file."""


class HugeInt(float):
    """An integer of more than MAX_INT_DIGITS digits in a JSON file: infinite as a number (so every
    finiteness check rejects it), shown as '<integer of N digits>'."""

    digits = 0

    def __new__(cls, text: str):
        value = super().__new__(cls, "-inf" if text.startswith("-") else "inf")
        value.digits = len(text.lstrip("-"))
        return value

    def __repr__(self) -> str:
        return f"<integer of {self.digits} digits>"

    __str__ = __repr__


def _parse_int(text: str):
    return int(text) if len(text) <= MAX_INT_DIGITS else HugeInt(text)


def loads(text):
    """json.loads with integers beyond MAX_INT_DIGITS as HugeInt (str or bytes in, like json.loads)."""
    return json.loads(text, parse_int=_parse_int)


def parse_line(raw: bytes, where: str) -> Tuple[Optional[dict], Optional[str]]:
    """(record, None) or (None, "<where>: <what is wrong>") for the bytes of one JSONL line; never raises."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
    return parse_text(text, where)


def parse_text(text: str, where: str) -> Tuple[Optional[dict], Optional[str]]:
    """(record, None) or (None, error naming `where`) for one JSON text; never raises."""
    try:
        record = loads(text)
    except json.JSONDecodeError as e:
        return None, f"{where}: invalid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, f"{where}: invalid JSON (nested deeper than the parser allows)"
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        return None, f"{where}: invalid JSON ({type(e).__name__}: {str(e)[:200]})"
    if not isinstance(record, dict):
        return None, f"{where}: a record must be a JSON object, got {type(record).__name__}"
    return record, None


def _open(path):
    """The file opened for binary reading, its first block checked; DataFileError naming it otherwise."""
    shown = str(path)
    try:
        if os.path.isdir(path):
            raise DataFileError(f"{shown}: is a directory, not a data file")
        f = open(path, "rb")
    except DataFileError:
        raise
    except FileNotFoundError:
        raise DataFileError(f"{shown}: file not found") from None
    except PermissionError:
        raise DataFileError(f"{shown}: permission denied") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise DataFileError(f"{shown}: cannot open: {e}") from None
    try:
        head = f.read(4096)
    except OSError as e:
        f.close()
        raise DataFileError(f"{shown}: cannot read: {e}") from None
    problem = _encoding_problem(head)
    if problem:
        f.close()
        raise DataFileError(f"{shown}: {problem}; Uni-STG files are UTF-8 text (convert with iconv -t UTF-8)")
    f.seek(0)
    return f


def _encoding_problem(head: bytes) -> Optional[str]:
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32 text (byte-order mark)"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text (byte-order mark)"
    first = head.split(b"\n", 1)[0]
    if len(first) >= 4 and first.count(0) * 5 >= len(first) * 2:  # UTF-16 ASCII: every second byte
        return "binary data or UTF-16/32 text without a byte-order mark (the first line is 40% NUL bytes)"
    return None


def iter_lines(path) -> Iterator[Tuple[int, Optional[dict], Optional[str]]]:
    """Yield (line number from 1, record or None, error or None) for each non-blank line of a JSONL file.

    A line that is not a JSON object yields its error ("line N: ...") instead of raising, so one bad line
    loses nothing else; file-level problems raise DataFileError (module docstring).
    """
    with _open(path) as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if not raw.strip():
                continue
            record, error = parse_line(raw, f"line {line_no}")
            yield line_no, record, error


def is_json_list(path) -> bool:
    """True when the file's first non-blank character (after a byte-order mark) is '['."""
    with _open(path) as f:
        head = f.read(4096)
    head = head[len(BOM):] if head.startswith(BOM) else head
    return head.lstrip()[:1] == b"["


def iter_records(path) -> Iterator[Tuple[str, Optional[dict], Optional[str]]]:
    """Yield (where, record or None, error or None) for every record of a JSONL or JSON list file.

    `where` is "line N" (JSONL) or "record N" (the N-th element of a JSON list, from 1); errors start with
    it. A file whose first line is a JSON array but which is not one JSON list is read as JSONL. A JSON
    list file is parsed whole (it is one JSON text): a syntax error in it raises DataFileError with the
    line and column.
    """
    if is_json_list(path):
        records = _load_list(path)
        if records is not None:
            for n, record in enumerate(records, 1):
                where = f"record {n}"
                if isinstance(record, dict):
                    yield where, record, None
                else:
                    yield where, None, f"{where}: a record must be a JSON object, got {type(record).__name__}"
            return
    for line_no, record, error in iter_lines(path):
        yield f"line {line_no}", record, error


def _load_list(path) -> Optional[list]:
    """The elements of a JSON list file, or None when the file is JSONL whose first line is an array."""
    with _open(path) as f:
        data = f.read()
    data = data[len(BOM):] if data.startswith(BOM) else data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataFileError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line})") from None
    try:
        value = loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and e.lineno > 1 and _parses(text.split("\n", 1)[0]):
            return None  # JSONL whose first line is an array
        raise DataFileError(f"{path}: invalid JSON list ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise DataFileError(f"{path}: invalid JSON (nested deeper than the parser allows)") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise DataFileError(f"{path}: invalid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(value, list):
        raise DataFileError(f"{path}: expected a JSON list of records, got {type(value).__name__}")
    return value


def _parses(text: str) -> bool:
    try:
        loads(text)
    except (ValueError, RecursionError, TypeError, OverflowError, MemoryError):
        return False
    return True


def read_jsonl(path) -> Iterator[dict]:
    """Yield the records of a JSONL file; raises ValueError naming the line on a malformed one."""
    for _, record, error in iter_lines(path):
        if error:
            raise ValueError(f"{path}: {error}")
        yield record


def count_lines(path) -> int:
    """Number of non-blank lines (for progress bar totals), read in blocks."""
    with _open(path) as f:
        return sum(1 for line in f if line.strip() and line.strip() != BOM)


def done_ids(path) -> set:
    """Ids of the records already in a (possibly partial) JSONL output; empty when it does not exist.

    A last line cut off by a crash is ignored, and `JsonlWriter` drops it before appending.
    """
    if not Path(path).exists():
        return set()
    return {str(r["id"]) for _, r, err in iter_lines(path) if err is None and "id" in r}


class JsonlWriter:
    """Append records to a JSONL file one line at a time (a context manager).

    `append=False` truncates. With `append=True` an unterminated last line (a crash mid-write) is removed
    first, so the file stays valid JSONL.
    """

    def __init__(self, path, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append:
            _drop_partial_last_line(self.path)
        self._f = open(self.path, "a" if append else "w", encoding="utf-8")
        self.count = 0

    def write(self, record: dict) -> None:
        try:
            self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        except UnicodeEncodeError:  # a lone surrogate in a string: escaped, so the line stays UTF-8
            self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _drop_partial_last_line(path: Path, block: int = 1 << 16) -> None:
    """Cut an unterminated last line (a write interrupted by a crash), reading backwards in blocks."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(pos - block, 0)
            f.seek(start)
            chunk = f.read(pos - start)
            if pos == end and chunk.endswith(b"\n"):
                return
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            pos = start
        f.truncate(0)
