"""The built wheel works outside a checkout: `llava-st --help`, `eval`/`demo` help, one grounding and
the demo with the checkpoint found as package data, all from a non-editable install.

The new venv takes llava_st from the wheel only (installed with pip, non-editable); its dependencies
come from the project's venv through a .pth line (the lock's 6 GB are not installed twice). That
line adds the other venv's site-packages as a plain path, so its .pth files, among them the editable
finder of the checkout, are not processed: `import llava_st` can only find the wheel's copy.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, cwd, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin dir, the wheel's site-packages) of a new venv with the built wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "llava_st", src / "llava_st", ignore=shutil.ignore_patterns("__pycache__"))
    built = run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist", src], cwd=tmp)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("llava_st-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "llava_st/checkpoints/llava-st-demo/model.safetensors" in names
    assert "llava_st/checkpoints/llava-st-demo/video_processor/preprocessor_config.json" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)

    venv = tmp / "venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp).returncode == 0
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip())
    (site / "_project_venv_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], cwd=tmp)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return venv / "bin", site


def test_console_script_and_subcommand_help(installed, tmp_path):
    bin_dir, site = installed
    where = run([bin_dir / "python", "-c", "import llava_st; print(llava_st.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).parent == site / "llava_st", where.stderr
    top = run([bin_dir / "llava-st", "--help"], cwd=tmp_path)
    assert top.returncode == 0 and all(f"llava-st {c}" in top.stdout for c in ("ground", "eval", "demo")), top.stderr
    for command in ("ground", "eval", "demo"):
        proc = run([bin_dir / "llava-st", command, "--help"], cwd=tmp_path)
        assert proc.returncode == 0 and f"llava-st {command}" in proc.stdout, proc.stderr[-2000:]


def test_grounding_and_demo_from_the_installed_package(installed, tmp_path):
    from llava_st.data.synthetic import write_split
    from llava_st.recipes import synthetic_stg as stg

    bin_dir, site = installed
    checkpoint = site / "llava_st" / "checkpoints" / "llava-st-demo"
    (record,) = write_split(tmp_path / "clips", 1, stg.HELD_OUT_SEED, stg.VIDEOS, "heldout", progress=False)
    out = tmp_path / "tubes.json"
    proc = run([bin_dir / "llava-st", "ground", "--model", checkpoint, "--video", tmp_path / "clips" / record["video"],
                "--query", record["caption"], "--frames", str(stg.FRAMES), "--out", out], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tube,) = json.loads(out.read_text())
    assert tube["status"] == "ok" and tube["query"] == record["caption"], tube
    assert tube["frames"] and all(len(f["box_xyxy"]) == 4 for f in tube["frames"])

    # `llava-st demo` finds the shipped checkpoint as package data (no checkout around it)
    proc = run([bin_dir / "llava-st", "demo", "--num-videos", "2", "--viz", "0", "--train-steps", "0", "--out", tmp_path / "demo"],
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "m_vIoU" in proc.stdout and (tmp_path / "demo" / "tubes.json").is_file()

    missing = tmp_path / "no-such-checkpoint"
    proc = run([bin_dir / "llava-st", "demo", "--checkpoint", missing, "--out", tmp_path / "demo2"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"llava-st demo: no checkpoint at {missing} (no config.json): give one with --checkpoint DIR, "
        "or train it with `make demo-train` in a checkout"
    ]
