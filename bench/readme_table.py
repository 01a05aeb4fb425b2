"""Regenerate the README's performance section from bench/results/*.json.

The section lies between `<!-- bench:start -->` and `<!-- bench:end -->`; everything else in README.md is
left as it is. The base model's held-out accuracy table (bench/results/base_model.json, written by
`make base`) goes between `<!-- base:start -->` and `<!-- base:end -->` when the README has them.
`python -m bench.readme_table [--readme README.md] [--results bench/results]`.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import List, Optional

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
BASE_START, BASE_END = "<!-- base:start -->", "<!-- base:end -->"
ABLATIONS_START, ABLATIONS_END = "<!-- ablations:start -->", "<!-- ablations:end -->"
DEMO_START, DEMO_END = "<!-- demo:start -->", "<!-- demo:end -->"
ORDER = ("tube_latency", "multi_description", "training", "dataset", "metrics", "analyzer", "synth_ranks", "eval_ranks", "gpu_check")
# Scale-out benchmarks: records per second at 1 and at N workers (requests in flight, torchrun ranks).
SCALING = ("analyzer", "synth_ranks", "eval_ranks")


def load_results(folder) -> List[dict]:
    """The benchmark JSON files of `folder` (those with "targets"), in ORDER, then any others by name."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "targets" in data and "name" in data:
            found[data["name"]] = data
    return [found[n] for n in ORDER if n in found] + [found[n] for n in sorted(found) if n not in ORDER]


def _value(t: dict) -> str:
    unit = t.get("unit", "")
    return f"{t['value']:.3g}{unit}" if unit != "%" else f"{t['value']:.2f}%"


def _busy(data: dict) -> str:
    return "busy" if str(data.get("machine_busy", "no")).startswith("yes") else "idle"


def targets_table(results: List[dict]) -> List[str]:
    rows = ["| Benchmark | Measured | Target | Met | Host | Device, threads | Repeats | CPU load |", "|---|---|---|---|---|---|---|---|"]
    for data in results:
        quick = " (quick)" if data.get("quick") else ""
        for t in data["targets"]:
            rows.append(
                f"| {t['what']}{quick} | {_value(t)} | {t['target']} | {'yes' if t['met'] else '**no**'} | {data['host']} "
                f"| {data['device']}, {data.get('torch_threads', '?')} | {data.get('repeats', '?')} | {_busy(data)} |"
            )
    return rows


def latency_table(data: dict) -> List[str]:
    """Per frame count: medians (seconds) of each variant and the two ratios."""
    rows = [
        "| Frames | LLM tokens | plain answer (s) | tube (s) | boxes as text (s) | tube / plain | text / tube "
        "| text / tube after the prefix | vision tower (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in data["results"].items():
        m = r["median_s"]
        rows.append(
            f"| {key.split('_')[0]} | {r['video_tokens'] + r['queries'] + r['prompt_tokens_before_splice'] - 1} "
            f"| {m['plain']:.3g} | {m['tube']:.3g} | {m['text_tube']:.3g} | {r['tube_over_plain']:.3g} "
            f"| {r['text_tube_over_tube']:.3g} | {r['text_tube_over_tube_after_prefix']:.3g} | {r['vision_tower_s']:.3g} |"
        )
    return rows


def learning_table(data: dict) -> List[str]:
    """bench/learning_check.py's variants: held-out metrics (%) and training seconds."""
    steps = sum(stage["steps"] for stage in data["recipe"]["stages"])
    rows = [
        f"Learning check ({data['date']}, {data['device']}, {steps} optimizer steps per variant, "
        f"{data['results'][0]['metrics']['n']} held-out synthetic videos; `python -m bench.learning_check`):",
        "",
        "| Variant | m_tIoU | m_vIoU | vIoU@0.3 | vIoU@0.5 | train s |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        m = r["metrics"]
        rows.append(
            f"| {r['variant']} | {100 * m['m_tIoU']:.1f} | {100 * m['m_vIoU']:.1f} | {100 * m['vIoU@0.3']:.1f} "
            f"| {100 * m['vIoU@0.5']:.1f} | {r['seconds']:.0f} |"
        )
    return rows


def _maybe(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3g}{unit}"


def scaling_table(results: List[dict]) -> List[str]:
    """Records/s of each scale-out benchmark at 1 and N workers, the ratio, its per-repeat spread, what bounds a
    2-rank ratio on this machine (the cores one rank keeps busy; two processes of a fixed CPU-bound job) and the load."""
    rows = ["| Benchmark | Records | Workers | Records/s | Ratio | Per-repeat ratios (spread) | Cores busy with 1 rank "
            "| 2 CPU-bound processes / 1 | 1-min load before |", "|---|---|---|---|---|---|---|---|---|"]
    for data in results:
        r = data["results"]
        per = r.get("records_per_s")
        if data["name"] not in SCALING or not isinstance(per, dict):
            continue
        workers = sorted(per, key=int)
        stab = r.get("stability", {})
        quick = " (quick)" if data.get("quick") else ""
        rows.append(
            f"| {data['name']}{quick} | {data['config'].get('records', '?')} | {' vs '.join(workers)} "
            f"| {' vs '.join(f'{per[w]:.3g}' for w in workers)} | {r.get('ratio', 0):.3g}x "
            f"| {', '.join(f'{x:.3g}' for x in stab.get('ratios', []))} ({stab.get('spread_pct', 0):.0f}%) "
            f"| {_maybe(r.get('one_rank_cores'))} | {_maybe(r.get('machine_parallel_ceiling', {}).get('ceiling'), 'x')} "
            f"| {data.get('load_before', [0])[0]:.2f} |"
        )
    return rows if len(rows) > 2 else []


def gpu_lines(data: Optional[dict]) -> List[str]:
    """One paragraph on the GPU check: not yet run, or its main figures."""
    if data is None:
        return ["GPU check: **not yet run on a GPU**. `bash bench/gpu_check.sh` on one H100/H200 (at most 8 min after a one-time "
                "venv install from requirements.lock) times a LLaVA-Video-7B-shaped random model (Qwen2-7B widths, SigLIP-so400m "
                "tower, bf16, sdpa, 64 frames): frames/s grounded end to end (goal >= 100), 8 vs 1 descriptions, tube vs plain "
                "answer, one training step ST on vs off through upstream `train()` with ZeRO-3 (8 layers), peak GPU memory; "
                "results to `bench/results/gpu_check.json` and this table. Its `--dry-run` (same code, tiny sizes, CPU) runs "
                "in the tests (tests/test_gpu_check.py)."]
    r = data["results"]
    g, d, t = r.get("grounding", {}), r.get("descriptions", {}), r.get("tube_vs_plain", {})
    train = r.get("training", {})
    on, off = train.get("st_on", {}), train.get("st_off", {})
    step = (f"training step ST on {on['step_s'][-1]:.3g} s vs off {off['step_s'][-1]:.3g} s "
            f"({train.get('layers', '?')} layers, ZeRO-3, peak {on['peak_memory']['gib']:.3g} vs {off['peak_memory']['gib']:.3g} GiB)"
            if on.get("step_s") and off.get("step_s") else f"training step: {on.get('error') or on.get('skipped') or 'not measured'}")
    dry = " (dry run)" if data.get("dry_run") else ""
    return [f"GPU check{dry} ({data['device']}, {data['started']}): {g.get('frames_per_s', 0):.3g} frames/s grounded end to end "
            f"({data['config']['frames']} frames, {data['config']['llm']['num_hidden_layers']} layers); "
            f"8 descriptions / 1 = {d.get('ratio_8_over_1', 0):.3g}x; tube / plain = {t.get('tube_over_plain', 0):.3g}x; {step}; "
            f"peak memory {r.get('peak_memory_inference', {}).get('gib', 0):.3g} GiB at inference."]


def load_learning_check(folder) -> Optional[dict]:
    path = Path(folder) / "learning_check.json"
    return json.loads(path.read_text()) if path.is_file() else None


def render(results: List[dict], learning: Optional[dict] = None) -> str:
    """The markdown between the markers (without them)."""
    lines = [
        "_Generated by `python -m bench.readme_table` from `bench/results/*.json` (written by `make bench`); do not edit by hand._",
        "",
    ]
    if not results:
        return "\n".join(lines + ["No benchmark results yet: run `make bench`."])
    lines += targets_table(results)
    by_name = {d["name"]: d for d in results}
    if "tube_latency" in by_name:
        lines += ["", "Tube latency by frame count (medians, LLM side; the vision tower's time is listed apart):", ""]
        lines += latency_table(by_name["tube_latency"])
    scaling = scaling_table(results)
    if scaling:
        lines += ["", "Scale-out (records per second at 1 and N workers; ratio of the medians):", ""] + scaling
    lines += [""] + gpu_lines(by_name.get("gpu_check"))
    if learning:
        lines += [""] + learning_table(learning)
    notes = [(d["name"], n) for d in results for n in d.get("notes", [])]
    if notes:
        lines += [""] + [f"- {name}: {note}" for name, note in notes]
    return "\n".join(lines)


def update_readme(text: str, section: str, start: str = START, end: str = END) -> str:
    """`text` with the part between the markers replaced by `section`. ValueError without both markers."""
    if start not in text or end not in text or text.index(start) > text.index(end):
        raise ValueError(f"README has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{section}\n{end}{tail}"


def load_base_model(folder) -> Optional[dict]:
    path = Path(folder) / "base_model.json"
    return json.loads(path.read_text()) if path.is_file() else None


def base_model_section(data: Optional[dict]) -> str:
    """The base model's held-out QA accuracy table (llava_st.recipes.base_model.accuracy_table) and its run."""
    head = ("_Generated by `python -m bench.readme_table` from `bench/results/base_model.json` (written by `make base`); "
            "do not edit by hand._")
    if data is None:
        return "\n".join([head, "", "No base model results yet: run `make base`."])
    from llava_st.recipes.base_model import accuracy_table

    h = data["heldout"]
    line = (f"{h['clips']} held-out clips (seed {h['seed']}, never trained on), one question per prompt, greedy; "
            f"{data['steps']:,} steps in {data['train_seconds'] / 60:.0f} min of training on {data['torch_threads']} thread(s) "
            f"({data['device']}, {data['date']}); checkpoint {data['checkpoint_bytes'] / 2**20:.1f} MiB.")
    return "\n".join([head, "", line, ""] + accuracy_table(data))


def _generated(folder, name: str, writer: str):
    """(the section's "generated from" line, the data of `folder`/`name` or None when absent)."""
    head = f"_Generated by `python -m bench.readme_table` from `bench/results/{name}` (written by `{writer}`); do not edit by hand._"
    path = Path(folder) / name
    return head, (json.loads(path.read_text()) if path.is_file() else None)


def ablations_section(folder) -> str:
    """The ablations table (bench.ablations.table) from `folder`/ablations.json, with the seeds of each row."""
    head, data = _generated(folder, "ablations.json", "python -m bench.ablations")
    if data is None:
        return "\n".join([head, "", "No ablation results yet: run `python -m bench.ablations`."])
    from bench.ablations import VARIANTS, frame_table, hits_table, rerun_table, table

    seeds = ", ".join(f"{n} {v['num_seeds']}" for n, v in data["variants"].items()) or "none"
    missing = [n for n in VARIANTS if n not in data["variants"]]
    complete = not missing and all(v["complete"] for v in data["variants"].values())
    state = (f"Every variant has at least {data['complete_seeds']} seeds" if complete else
             f"**Partial until every variant has {data['complete_seeds']} seeds** (rows marked incomplete are not results yet)")
    line = (f"Seeds per row: {seeds}" + (f"; not run yet: {', '.join(missing)}" if missing else "")
            + f". {state}. Beyond spread: {data['spread_rule']}.")
    frames = frame_table(data)
    if frames:
        frames = ["", "Box IoU (%) by sampled frame index, inside both the true span and the predicted tube (mean over seeds). "
                  "An interleaved query sees only its own and earlier frames, so if causal attention limited it, its IoU "
                  "would rise with the frame index; queries after the video see every frame.", ""] + frames
    hits = hits_table(data)
    if hits:
        hits = ["", "Which object the boxes are on (%: the object each box overlaps most, neither when its IoU is below "
                "0.1 with every object; frames inside both spans; the seeds measured; how well a box fits is m_vIoU's). "
                "The description follows the video in the prompt, so under causal attention no query (interleaved or "
                "after) sees it: only the decoder's dual cross attention brings it to the boxes (without it two "
                "descriptions of one clip get the same boxes: tests/test_ablations.py).", ""] + hits
    reruns = rerun_table(data)
    if reruns:
        reruns = ["", "Reruns (`--rerun`: the same variant, seed, data and code again, on another day's machine; not in the "
                  "means above). Inference reproduces across machines (the shipped demo checkpoint scores the same on each), and "
                  "a fine-tune is bitwise reproducible on one machine (tests/test_demo.py); these reruns are not, while "
                  "`make demo-train`'s from-scratch recipe gave the same weights bit for bit on two machines: why these "
                  "differ is not established.", ""] + reruns
    return "\n".join([head, "", line, ""] + table(data) + frames + hits + reruns)


# The demo-train runs the demo section shows: the file, what produced it.
DEMO_RUNS = (("demo_checkpoint.json", "`make demo-train`"),
             ("demo_checkpoint_scratch.json", "the from-scratch recipe (`Recipe()`, SCRATCH_STAGES: `make demo-train` before the "
                                              "demo checkpoint was fine-tuned from the base)"))


def _demo_run_line(data: dict, what: str) -> str:
    steps = sum(stage["steps"] for stage in data["recipe"]["stages"])
    start = f"`{data['recipe']['base']}`" if data["recipe"].get("base") else "random weights"
    wall = f", {data['wall_seconds'] / 60:.1f} min in all with the data and the evaluations" if data.get("wall_seconds") else ""
    shipped = Path(__file__).resolve().parents[1] / "llava_st" / "checkpoints" / "llava-st-demo" / "model.safetensors"
    digest = data["model.safetensors sha256"]
    same = shipped.is_file() and hashlib.sha256(shipped.read_bytes()).hexdigest() == digest
    return (f"- {what} on {data['date']}: {steps:,} steps from {start} in {data['seconds'] / 60:.1f} min of Trainer time{wall} "
            f"(one process, one core, seed {data['recipe']['seed']}); weights sha256 `{digest[:16]}…`, "
            f"{'the shipped checkpoint' if same else 'not the shipped checkpoint'}'s; held-out seed {data['held_out_seed']}.")


def demo_section(folder) -> str:
    """The demo-train runs' held-out table (DEMO_RUNS under `folder`: demo_checkpoint.json, written by `make
    demo-train`, and the from-scratch recipe's run when recorded), saying which run's weights are shipped."""
    head, data = _generated(folder, DEMO_RUNS[0][0], "make demo-train")
    if data is None:
        return "\n".join([head, "", "No demo-train run recorded yet: run `make demo-train`."])
    runs = [(what, json.loads((Path(folder) / name).read_text())) for name, what in DEMO_RUNS if (Path(folder) / name).is_file()]
    rows = [head, ""] + [_demo_run_line(d, what) for what, d in runs]
    rows += ["", "| Run | Held out | m_tIoU | m_vIoU | vIoU@0.3 | vIoU@0.5 |", "|---|---|---|---|---|---|"]
    for _, d in runs:
        label = "from the base" if d["recipe"].get("base") else "from scratch"
        for name, m in d["heldout"].items():
            rows.append(f"| {label} | {name} | " + " | ".join(f"{100 * m[k]:.1f}" for k in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"))
                        + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", default=str(root / "README.md"))
    p.add_argument("--results", default=str(root / "bench" / "results"))
    args = p.parse_args(argv)
    readme = Path(args.readme)
    text = update_readme(readme.read_text(), render(load_results(args.results), load_learning_check(args.results)))
    if BASE_START in text:
        text = update_readme(text, base_model_section(load_base_model(args.results)), BASE_START, BASE_END)
    if DEMO_START in text:
        text = update_readme(text, demo_section(args.results), DEMO_START, DEMO_END)
    if ABLATIONS_START in text:
        text = update_readme(text, ablations_section(args.results), ABLATIONS_START, ABLATIONS_END)
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
