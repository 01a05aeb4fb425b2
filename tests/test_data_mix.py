"""Mixer: counts, ratios, upsampling with unique ids, Table 1 proportions, determinism by seed."""

import json
from collections import Counter

import pytest

from llava_st import cli
from llava_st.data.jsonl import read_jsonl
from llava_st.data.mix import TABLE1, MixSource, mix, parse_source, table1_counts


def _file(path, task, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"{task}{i}", "task": task}) + "\n")
        f.write("\n")  # blank lines are not records
    return str(path)


def test_parse_source():
    assert parse_source("a.jsonl") == MixSource("a.jsonl")
    assert parse_source("dir@x/a.jsonl@120") == MixSource("dir@x/a.jsonl", count=120)
    assert parse_source("a.jsonl@0.5") == MixSource("a.jsonl", ratio=0.5)
    with pytest.raises(ValueError, match="PATH@COUNT"):
        parse_source("a.jsonl@-3")
    with pytest.raises(ValueError, match="PATH@COUNT"):
        parse_source("a.jsonl@lots")


def test_counts_ratios_and_upsampling(tmp_path):
    a, b, c = (
        _file(tmp_path / "a.jsonl", "vtg", 10),
        _file(tmp_path / "b.jsonl", "rec", 20),
        _file(tmp_path / "c.jsonl", "qa", 4),
    )
    out = tmp_path / "mix.jsonl"
    taken = mix(
        [MixSource(a, count=7), MixSource(b, ratio=0.5), MixSource(c, count=10)], str(out), seed=1, progress=False
    )
    assert taken == {a: 7, b: 10, c: 10}
    records = list(read_jsonl(out))
    tasks = Counter(r["task"] for r in records)
    assert tasks == {"vtg": 7, "rec": 10, "qa": 10}
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)  # upsampled copies get #r<n>
    assert {i.split("#")[0] for i in ids if i.startswith("qa")} == {f"qa{i}" for i in range(4)}  # 10 = 2 x 4 + 2
    assert sum(i.startswith("qa") and "#r" in i for i in ids) == 6
    assert len({r["id"] for r in records if r["task"] == "vtg"}) == 7  # without replacement
    assert [r["task"] for r in records] != sorted(r["task"] for r in records)  # shuffled


def test_deterministic_by_seed(tmp_path):
    a, b = _file(tmp_path / "a.jsonl", "vtg", 50), _file(tmp_path / "b.jsonl", "rec", 50)
    runs = []
    for seed, name in ((0, "x"), (0, "y"), (1, "z")):
        mix(
            [MixSource(a, count=20), MixSource(b, count=20)], str(tmp_path / f"{name}.jsonl"), seed=seed, progress=False
        )
        runs.append((tmp_path / f"{name}.jsonl").read_text())
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_table1_counts():
    counts = table1_counts(["d", "c", "t", "r"], [300, 100, 100, 1000], ["vtg", "vtg", "vtg", "rec"], scale=0.01)
    assert counts[:3] == [300, 100, 100] and sum(counts[:3]) == TABLE1["vtg"] // 100
    assert counts[3] == TABLE1["rec"] // 100
    with pytest.raises(ValueError, match="not in Table 1"):
        table1_counts(["x"], [1], ["grounding"])


def test_cli_mix_table1(tmp_path, capsys):
    v = _file(tmp_path / "vtg.jsonl", "vtg", 30)
    s = _file(tmp_path / "stvg.jsonl", "stvg", 30)
    out = tmp_path / "mix.jsonl"
    assert cli.main(["data", "mix", v, s, "--out", str(out), "--table1", "--scale", "0.001", "--seed", "3"]) == 0
    assert Counter(r["task"] for r in read_jsonl(out)) == {"vtg": 50, "stvg": 110}
    assert "160 records" in capsys.readouterr().out
