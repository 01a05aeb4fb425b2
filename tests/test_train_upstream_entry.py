"""`python -m llava_st.train` without `--model_class_name LlavaSTQwen`: llava_st's options or data with
boxes stop the run before step 0 with one line saying what to add; plain data trains as upstream does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_upstream_data import write_mixed_data

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def upstream_args(model_dir, data, output):
    """Upstream's LLaVA-Video arguments of train_scripts/tiny_cpu.sh, without llava_st's two additions."""
    data_root = str(Path(data).parent)
    return [
        "--use_cpu", "True", "--model_name_or_path", str(model_dir), "--version", "qwen_1_5", "--data_path", str(data),
        "--image_folder", data_root, "--video_folder", data_root, "--mm_tunable_parts", "mm_mlp_adapter,mm_language_model",
        "--vision_tower", "local/tiny-siglip-so400m-patch14-384", "--mm_projector_type", "mlp2x_gelu",
        "--mm_vision_select_layer", "-2", "--mm_use_im_start_end", "False", "--mm_use_im_patch_token", "False",
        "--image_aspect_ratio", "anyres_max_9", "--image_grid_pinpoints", "[[384, 384], [384, 768], [768, 384], [768, 768]]",
        "--mm_patch_merge_type", "spatial_unpad", "--mm_newline_position", "grid", "--add_time_instruction", "True",
        "--force_sample", "True", "--frames_upbound", "4", "--bf16", "True", "--attn_implementation", "sdpa",
        "--output_dir", str(output), "--max_steps", "1", "--per_device_train_batch_size", "2", "--save_strategy", "no",
        "--learning_rate", "1e-3", "--logging_steps", "1", "--model_max_length", "4096", "--dataloader_num_workers", "0",
        "--lazy_preprocess", "True", "--report_to", "none", "--seed", "0",
    ]  # fmt: skip


def run_entry(args):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=path)
    return subprocess.run([sys.executable, "-m", "llava_st.train", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_st_options_without_the_model_flag_stop_with_one_line(tmp_path):
    proc = run_entry(["--model_name_or_path", "some/llava-video-qwen", "--st_num_queries", "8", "--st_query_mode=after", "--seed", "0"])
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert err == [
        "llava_st.train: --st_num_queries --st_query_mode configure the llava_st model, but the command line has "
        "no --model_class_name: add --model_class_name LlavaSTQwen"
    ]
    proc = run_entry(["--model_class_name", "LlavaQwen", "--st_lambda_l1", "2"])
    assert proc.returncode == 1 and "has --model_class_name LlavaQwen: add --model_class_name LlavaSTQwen" in proc.stderr


def test_grounding_data_without_the_model_flag_stops_before_step_0(tiny_llava_qwen_dir, tmp_path):
    data = write_mixed_data(tmp_path / "data")  # stvg + rec + vtg + qa
    out = tmp_path / "out"
    proc = run_entry(upstream_args(tiny_llava_qwen_dir, data, out))
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "llava_st.train: the training data has records with boxes (1 rec, 1 stvg), which only the llava_st model trains: "
        "add --model_class_name LlavaSTQwen to the command line"
    )
    assert not (out / "trainer_state.json").exists() and "grounding_boxes" not in proc.stderr


def test_plain_data_without_the_model_flag_trains_as_upstream(tiny_llava_qwen_dir, tmp_path):
    data = write_mixed_data(tmp_path / "data")
    records = [r for r in json.loads(data.read_text()) if r["task"] in ("qa", "vtg")]
    data.write_text(json.dumps(records))
    out = tmp_path / "out"
    proc = run_entry(upstream_args(tiny_llava_qwen_dir, data, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 1
    (step,) = [h for h in state["log_history"] if "loss" in h]
    assert step["loss"] > 0 and not any(k.startswith("loss_") for k in step)  # upstream's model: no llava_st terms
    assert json.loads((out / "config.json").read_text())["model_type"] != "llava_st_qwen"
