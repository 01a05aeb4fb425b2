#!/bin/bash
# SpaceVLLM-7B, the paper's recipe (§4 "Implementation Details"): 16 GPUs on 2 nodes, DeepSpeed ZeRO-3.
#
# Differs from upstream's LLaVA-Video script (LLaVA-NeXT scripts/video/train/SO400M_Qwen2_7B_ov_to_video_am9.sh)
# only in:
#   - the entry point: `-m llava_st.train` instead of llava/train/train_mem.py
#   - --model_class_name LlavaSTQwen (+ the st_* options, spelled out here with the paper's values)
#   - initialised from lmms-lab/LLaVA-Video-7B-Qwen2 (instead of the OneVision checkpoint)
#   - --frames_upbound 64 (the paper's N_v), --model_max_length 32768 kept
#   - the data: a Uni-STG mix (yaml or json; `llava-st data mix`), and no wandb / torch_compile by default
# lr 1e-5, weight decay 0, cosine, warmup 0.03, ZeRO-3 (upstream's scripts/zero3.json) are upstream's own.
#
# Launch (every extra argument is passed on to training; ablation scripts use that):
#   one node, 8 GPUs:       bash train_scripts/spacevllm_7b.sh
#   two nodes (torchrun):   on each node: NNODES=2 NODE_RANK=<0|1> MASTER_ADDR=<node 0> bash train_scripts/spacevllm_7b.sh
#   two nodes (deepspeed):  on node 0: HOSTFILE=train_scripts/hostfile.example bash train_scripts/spacevllm_7b.sh
# Environment: DATA (yaml/json), IMAGE_FOLDER, VIDEO_FOLDER, OUTPUT (a name containing llava and qwen),
#   LLAVA_NEXT_SRC (for scripts/zero3.json), optional GPUS_PER_NODE (8), MASTER_PORT (29500), INIT.
set -euo pipefail
: "${DATA:?}" "${IMAGE_FOLDER:?}" "${VIDEO_FOLDER:?}"
INIT=${INIT:-lmms-lab/LLaVA-Video-7B-Qwen2}
OUTPUT=${OUTPUT:-./work_dirs/llava-video-7b-qwen2-spacevllm}
LLAVA_NEXT_SRC=${LLAVA_NEXT_SRC:-$(python -c 'import importlib.util as u, os; print(os.path.dirname(os.path.dirname(u.find_spec("llava").origin)))')}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

if [ -n "${HOSTFILE:-}" ]; then
    LAUNCH=(deepspeed --hostfile "$HOSTFILE" --master_port "${MASTER_PORT:-29500}" --module)
else
    LAUNCH=(torchrun --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" --nproc_per_node "$GPUS_PER_NODE"
            --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" -m)
fi

"${LAUNCH[@]}" llava_st.train \
    --deepspeed "$LLAVA_NEXT_SRC/scripts/zero3.json" \
    --model_name_or_path "$INIT" \
    --model_class_name LlavaSTQwen \
    --st_num_queries 64 \
    --st_query_mode interleave \
    --st_dual_cross_attention True \
    --st_lambda_time 1.0 \
    --st_lambda_space 1.0 \
    --st_lambda_l1 3.0 \
    --st_lambda_giou 1.0 \
    --version qwen_1_5 \
    --data_path "$DATA" \
    --image_folder "$IMAGE_FOLDER" \
    --video_folder "$VIDEO_FOLDER" \
    --mm_tunable_parts "mm_vision_tower,mm_mlp_adapter,mm_language_model" \
    --mm_vision_tower_lr 2e-6 \
    --vision_tower google/siglip-so400m-patch14-384 \
    --mm_projector_type mlp2x_gelu \
    --mm_vision_select_layer -2 \
    --mm_use_im_start_end False \
    --mm_use_im_patch_token False \
    --group_by_modality_length True \
    --image_aspect_ratio anyres_max_9 \
    --image_grid_pinpoints "(1x1),...,(6x6)" \
    --mm_patch_merge_type spatial_unpad \
    --bf16 True \
    --run_name "$(basename "$OUTPUT")" \
    --output_dir "$OUTPUT" \
    --num_train_epochs 1 \
    --per_device_train_batch_size 1 \
    --per_device_eval_batch_size 4 \
    --gradient_accumulation_steps 2 \
    --evaluation_strategy "no" \
    --save_strategy "steps" \
    --save_steps 500 \
    --save_total_limit 1 \
    --learning_rate 1e-5 \
    --weight_decay 0. \
    --warmup_ratio 0.03 \
    --lr_scheduler_type "cosine" \
    --logging_steps 1 \
    --tf32 True \
    --model_max_length 32768 \
    --gradient_checkpointing True \
    --dataloader_num_workers 2 \
    --lazy_preprocess True \
    --report_to "${REPORT_TO:-none}" \
    --dataloader_drop_last True \
    --frames_upbound 64 \
    --mm_newline_position grid \
    --add_time_instruction True \
    --force_sample True \
    --mm_spatial_pool_stride 2 \
    "$@"
