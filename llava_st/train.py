"""Train llava_st with upstream LLaVA-NeXT: the user's LLaVA-Video training command, unchanged except
for the entry point and `--model_class_name LlavaSTQwen`.

    python -m llava_st.train  <upstream train arguments> --model_class_name LlavaSTQwen [--st_* ...]
    torchrun --nproc_per_node 8 -m llava_st.train  <same>
    deepspeed --module llava_st.train  <same>            (or the path of this file)
    llava-st train  <same>

Extra options (all optional): --st_num_queries, --st_query_mode, --st_dual_cross_attention,
--st_decoder_residual, --st_decoder_projections, --st_head_layers, --st_head_hidden, --st_lambda_time,
--st_lambda_space, --st_lambda_l1, --st_lambda_giou, --st_head_lr; `st_decoder` in
--mm_tunable_parts trains the space decoder with a frozen language model. See
llava_st/hosts/llava_next/train.py for what is changed in upstream's train module.
"""

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from llava_st.hosts.llava_next.train import run  # imports upstream `llava` (slow); absolute: runnable as a file

    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
