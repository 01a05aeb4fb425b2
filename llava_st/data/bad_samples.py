"""Bad training samples, logged once and counted by kind: one log shared by both hosts' datasets.

A dataset adds (id, kind, reason) when it drops a record at load or replaces a sample it cannot read; each
(id, kind) is logged once. With a path attached the entries are appended as JSON lines
(`bad_samples.jsonl` in the output directory), so `summarize` covers every data-loader worker and rank, and
`write_summary` writes `bad_samples_summary.json` ({"total", "by_kind"}) at the end of a run.
"""

import json
import logging
import os
from collections import Counter
from typing import List, Optional

logger = logging.getLogger(__name__)

BAD_SAMPLES_FILE = "bad_samples.jsonl"
BAD_SAMPLES_SUMMARY = "bad_samples_summary.json"
INVALID = "invalid record"
PATH_OUTSIDE = "path outside data root"
MISSING = "missing file"
CORRUPT = "corrupt file"
NOT_IN_PROMPT = "description not in prompt"


class BadSampleLog:
    """Bad samples met by this process: each logged once (id, kind, reason) and counted by kind.

    With `path` set, entries are also appended as JSON lines, so `summarize(path)` covers every data
    loader worker and every rank of a run.
    """

    def __init__(self, path: Optional[str] = None):
        self.path = None
        self.entries: List[dict] = []
        self._seen = set()
        if path:
            self.attach(path)

    def attach(self, path: str) -> None:
        """Start writing to `path` (JSON lines), including what was logged before."""
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        for entry in self.entries:
            self._write(entry)

    def add(self, sample_id, kind: str, reason: str, index: Optional[int] = None) -> None:
        """Log and count a bad sample once: per (id, kind), or per (id, index) when the dataset gives the
        record's position (two records sharing an id, or having none, are then counted apart)."""
        key = (str(sample_id), kind) if index is None else (str(sample_id), index)
        if key in self._seen:
            return
        self._seen.add(key)
        entry = {"id": str(sample_id), "kind": kind, "reason": reason}
        if index is not None:
            entry["index"] = index
        self.entries.append(entry)
        logger.warning("bad sample %s (%s): %s — replaced by another sample", sample_id, kind, reason)
        if self.path:
            self._write(entry)

    def _write(self, entry: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    @property
    def counts(self) -> Counter:
        return Counter(e["kind"] for e in self.entries)


def summarize(path: str) -> Counter:
    """Counts by kind of the distinct bad samples (by id, and by record position where logged) written to
    `path`; empty when none."""
    if not os.path.isfile(path):
        return Counter()
    kinds = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                kinds.setdefault((entry["id"], entry.get("index")), entry["kind"])
    return Counter(kinds.values())


def write_summary(output_dir: str) -> dict:
    """Write OUTPUT/bad_samples_summary.json from OUTPUT/bad_samples.jsonl; returns {"total", "by_kind"}."""
    counts = summarize(os.path.join(output_dir, BAD_SAMPLES_FILE))
    summary = {"total": sum(counts.values()), "by_kind": dict(counts)}
    with open(os.path.join(output_dir, BAD_SAMPLES_SUMMARY), "w") as f:
        json.dump(summary, f, indent=1)
    return summary
