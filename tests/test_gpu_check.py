"""bench/gpu_check.py --dry-run: the GPU check's code path (model builders, end-to-end grounding, 8 vs 1
descriptions, tube vs plain, one training step ST on/off through upstream train() with ZeRO-3, peak
memory) on the CPU with tiny sizes, as a subprocess; its JSON has every field, with finite positive
numbers. No timing is asserted."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def numbers(value, path=""):
    """(path, number) for every int/float inside a JSON value."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from numbers(v, f"{path}[{i}]")


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check") / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return json.loads(out.read_text())


def test_dry_run_writes_every_field_with_finite_positive_numbers(dry_run):
    data = dry_run
    assert data["name"] == "gpu_check" and data["dry_run"] is True and data["device"].startswith("cpu")
    config = data["config"]
    assert config["frames"] == 4 and config["dtype"] == "float32" and config["attention"] == "sdpa"
    assert config["llm"]["hidden_size"] == 64 and config["tower"]["hidden_size"] == 1152
    assert data["environment"]["torch"] and data["environment"]["transformers"]
    r = data["results"]
    for path, x in numbers(r):
        assert math.isfinite(x), path
    g = r["grounding"]
    assert g["descriptions"] == 1 and len(g["seconds"]) == data["repeats"] == 1
    assert positive(g["frames_per_s"]) and positive(g["median_s"])
    assert set(g["breakdown_s"]) == {"video_decode_preprocess", "vision_tower", "space_decoder", "llm_prefill_answer_rest"}
    assert all(positive(v) for v in g["breakdown_s"].values()), g["breakdown_s"]
    assert all(positive(n) for n in g["answer_tokens"])
    d = r["descriptions"]
    assert d["eight"]["descriptions"] == 8 and len(d["eight"]["status"]) == 8
    assert positive(d["ratio_8_over_1"]) and positive(d["1"]) and positive(d["8"])
    t = r["tube_vs_plain"]
    assert positive(t["tube_over_plain"]) and positive(t["median_s"]["tube"]) and positive(t["median_s"]["plain"])
    for key in ("peak_memory_grounding", "peak_memory_8_descriptions", "peak_memory_inference"):
        assert positive(r[key]["gib"]) and r[key]["source"].startswith("ru_maxrss")
    assert positive(r["build_s"]) and positive(r["parameters_b"]) and positive(r["seconds_total"])


def test_dry_run_trains_one_step_st_on_and_off_through_upstream_train(dry_run):
    train = dry_run["results"]["training"]
    assert "ZeRO-3" in train["through"] and "train()" in train["through"]
    for variant in ("st_on", "st_off"):
        v = train[variant]
        assert "error" not in v and "skipped" not in v, v
        assert len(v["step_s"]) == 2 and all(positive(s) for s in v["step_s"])
        assert v["loss"] and all(positive(x) for x in v["loss"])
        assert positive(v["peak_memory"]["gib"])
        assert v["zero3"] is True  # DeepSpeed ZeRO-3 engaged inside upstream's trainer
    assert positive(train["step_st_on_over_off"]) and positive(train["peak_memory_st_on_over_off"])


def test_dry_run_records_the_targets(dry_run):
    targets = {t["what"]: t for t in dry_run["targets"]}
    assert len(targets) == 4
    fps = next(t for w, t in targets.items() if w.startswith("frames/s grounded"))
    assert fps["target"] == ">= 100" and positive(fps["value"])
    assert all(positive(t["value"]) and isinstance(t["met"], bool) for t in targets.values())


def test_dry_run_needs_an_out_path():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--out" in proc.stderr
