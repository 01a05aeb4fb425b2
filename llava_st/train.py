"""Train llava_st with upstream LLaVA-NeXT: the user's LLaVA-Video training command, unchanged except
for the entry point and `--model_class_name LlavaSTQwen`.

    python -m llava_st.train  <upstream train arguments> --model_class_name LlavaSTQwen [--st_* ...]
    torchrun --nproc_per_node 8 -m llava_st.train  <same>
    deepspeed --module llava_st.train  <same>            (or the path of this file)
    llava-st train  <same>

Extra options (all optional): --st_num_queries, --st_query_mode, --st_dual_cross_attention,
--st_decoder_residual, --st_decoder_projections, --st_decoder_reference, --st_head_layers, --st_head_hidden, --st_lambda_time,
--st_lambda_space, --st_lambda_l1, --st_lambda_giou, --st_head_lr; `space_decoder` in
--mm_tunable_parts trains the space decoder with a frozen language model. Without
`--model_class_name LlavaSTQwen` the run is upstream's own (upstream's model and collator): --st_*
options then stop it before upstream is imported, and training records with boxes (STVG, REC) before
step 0, each with one line saying what to add. See
llava_st/hosts/llava_next/train.py for what is changed in upstream's train module.
"""

import sys
from typing import List

# What `--model_class_name` names for llava_st's model (upstream resolves it as transformers.LlavaSTQwenForCausalLM).
MODEL_CLASS_NAME = "LlavaSTQwen"


def check_command_line(argv: List[str]) -> None:
    """Stop (SystemExit, one line) when llava_st's --st_* options are given without `--model_class_name
    LlavaSTQwen`: they configure the llava_st model only. Checked before upstream is imported."""
    model_class = None
    for i, arg in enumerate(argv):
        if arg == "--model_class_name" and i + 1 < len(argv):
            model_class = argv[i + 1]
        elif arg.startswith("--model_class_name="):
            model_class = arg.split("=", 1)[1]
    options = sorted({arg.split("=", 1)[0] for arg in argv if arg.startswith("--st_")}, key=argv_order(argv))
    if options and model_class != MODEL_CLASS_NAME:
        given = f"--model_class_name {model_class}" if model_class else "no --model_class_name"
        raise SystemExit(
            f"llava_st.train: {' '.join(options)} configure the llava_st model, but the command line has {given}: "
            f"add --model_class_name {MODEL_CLASS_NAME}"
        )


def argv_order(argv: List[str]):
    """Sort key: the position of an option's first occurrence in `argv`."""
    names = [arg.split("=", 1)[0] for arg in argv]
    return names.index


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check_command_line(argv)
    from llava_st.hosts.llava_next.train import run  # imports upstream `llava` (slow); absolute: runnable as a file

    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
