"""The launch recipes produce command lines that upstream's argument parser (extended by llava_st)
accepts, with the paper's values; the upstream bugs the entry point repairs are still there at the
installed upstream commit, and `install()` replaces exactly those names."""

import inspect
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.upstream

ROOT = Path(__file__).resolve().parents[1]


def launched_args(tmp_path, script, *args, **env) -> list:
    """Run a recipe with fake `torchrun`/`deepspeed` launchers; return the arguments after the entry."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for launcher in ("torchrun", "deepspeed"):
        fake = bin_dir / launcher
        fake.write_text('#!/bin/bash\necho "$(basename "$0")" > "$ARGS_OUT"; printf "%s\\n" "$@" >> "$ARGS_OUT"\n')
        fake.chmod(0o755)
    out = tmp_path / "args.txt"
    environ = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", ARGS_OUT=str(out), DATA="mix.yaml",
                   IMAGE_FOLDER="images", VIDEO_FOLDER="videos", LLAVA_NEXT_SRC="/upstream", **env)
    subprocess.run(["bash", str(ROOT / "train_scripts" / script), *args], env=environ, check=True, timeout=60)
    lines = out.read_text().splitlines()
    return lines[0], lines[:lines.index("llava_st.train")], lines[lines.index("llava_st.train") + 1 :]


def parse(args):
    import transformers
    from llava.train import train as upstream

    from llava_st.hosts.llava_next.train import install

    install()
    parser = transformers.HfArgumentParser((upstream.ModelArguments, upstream.DataArguments, upstream.TrainingArguments))
    return parser.parse_args(args)  # an unknown flag exits


def test_paper_recipe_one_node_and_two_nodes(tmp_path):
    launcher, launch, args = launched_args(tmp_path, "spacevllm_7b.sh")
    assert launcher == "torchrun" and "--nproc_per_node" in launch and launch[-1] == "-m"
    a = parse(args)
    assert a.model_class_name == "LlavaSTQwen" and a.model_name_or_path == "lmms-lab/LLaVA-Video-7B-Qwen2"
    assert a.deepspeed == "/upstream/scripts/zero3.json"
    assert (a.learning_rate, a.weight_decay, a.lr_scheduler_type, a.warmup_ratio) == (1e-5, 0.0, "cosine", 0.03)
    assert (a.frames_upbound, a.st_num_queries, a.st_query_mode, a.st_dual_cross_attention) == (64, 64, "interleave", True)
    assert (a.st_lambda_time, a.st_lambda_space, a.st_lambda_l1, a.st_lambda_giou) == (1.0, 1.0, 3.0, 1.0)
    assert a.force_sample and a.add_time_instruction and a.bf16

    _, launch, _ = launched_args(tmp_path, "spacevllm_7b.sh", NNODES="2", NODE_RANK="1", MASTER_ADDR="node-0")
    assert launch[launch.index("--nnodes") + 1] == "2" and launch[launch.index("--node_rank") + 1] == "1"
    launcher, launch, _ = launched_args(tmp_path, "spacevllm_7b.sh", HOSTFILE="train_scripts/hostfile.example")
    assert launcher == "deepspeed" and "--module" in launch and "train_scripts/hostfile.example" in launch


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("ablations/table7_boxes_as_text.sh", (), {"st_query_mode": "none"}),
        ("ablations/table7_queries_after_video.sh", (), {"st_query_mode": "after"}),
        ("ablations/table7_no_dual_cross_attention.sh", (), {"st_dual_cross_attention": False}),
        ("ablations/table9_queries.sh", ("96",), {"st_num_queries": 96, "frames_upbound": 96}),
    ],
)
def test_ablation_recipes_change_only_their_option(tmp_path, script, args, expected):
    _, _, base = launched_args(tmp_path, "spacevllm_7b.sh")
    _, _, ablation = launched_args(tmp_path, script, *args)
    a, b = vars(parse(base)), vars(parse(ablation))
    assert {k: v for k, v in b.items() if a[k] != v} == expected


def test_the_repaired_upstream_bugs_are_present_and_replaced():
    from llava.train import llava_trainer
    from llava.train import train as upstream

    from llava_st.hosts.llava_next.train import LlavaSTTrainer, install

    install()
    # bug 1: DebugOption used, never imported; bug 2: Accelerator(dispatch_batches=...)
    loop = inspect.getsource(llava_trainer.LLaVATrainer._inner_training_loop)
    assert "DebugOption" in loop and not hasattr(llava_trainer, "DebugOption")
    assert "dispatch_batches" in inspect.getsource(llava_trainer.LLaVATrainer.create_accelerator_and_postprocess)
    assert LlavaSTTrainer._inner_training_loop is llava_trainer.Trainer._inner_training_loop
    assert LlavaSTTrainer.create_accelerator_and_postprocess is llava_trainer.Trainer.create_accelerator_and_postprocess
    assert upstream.LLaVATrainer is LlavaSTTrainer
    # bug 3: torch.cuda.synchronize() without a CUDA check, now behind the wrapper
    wrapped = upstream.safe_save_model_for_hf_trainer
    original = inspect.unwrap(wrapped)
    assert wrapped is not original and original.__module__ == "llava.train.train"
    source = inspect.getsource(original)
    assert "torch.cuda.synchronize()" in source and "is_available" not in source
    assert inspect.unwrap(upstream.get_model).__module__ == "llava.train.train"
