#!/bin/bash
# Tiny CPU recipe (the tests run it): a few steps of upstream train() on a tiny random LLaVA-Qwen.
# Differs from upstream's LLaVA-Video script (scripts/video/train/SO400M_Qwen2_7B_ov_to_video_am9.sh) in:
#   entry point llava_st.train, --model_class_name LlavaSTQwen, --st_num_queries 8, 4 frames, the
#   vision tower frozen, no gradient checkpointing, sdpa attention, no tf32 / torch_compile / wandb,
#   tiny steps; NPROC=2 runs ZeRO-3 on the CPU
#   (DS_ACCELERATOR=cpu, gloo) with upstream's own scripts/zero3.json.
# Inputs (environment): MODEL (a llava+qwen checkpoint dir), DATA (json/yaml), DATA_ROOT (video and
# image folder), OUTPUT; optional NPROC (1), MAX_STEPS (3), SAVE_STEPS (2), ENTRY ("-m llava_st.train"),
# LLAVA_NEXT_SRC (for scripts/zero3.json), extra arguments are passed on.
set -euo pipefail
: "${MODEL:?}" "${DATA:?}" "${DATA_ROOT:?}" "${OUTPUT:?}"
NPROC=${NPROC:-1}
ENTRY=${ENTRY:--m llava_st.train}
LLAVA_NEXT_SRC=${LLAVA_NEXT_SRC:-$(python -c 'import importlib.util as u, os; print(os.path.dirname(os.path.dirname(u.find_spec("llava").origin)))')}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "$NPROC" -gt 1 ]; then
    export DS_ACCELERATOR=cpu
    LAUNCH=(torchrun --nproc_per_node "$NPROC" --master_port "${MASTER_PORT:-29517}")
    DS=(--deepspeed "$LLAVA_NEXT_SRC/scripts/zero3.json")
else
    LAUNCH=(python)
    DS=(--use_cpu True)
fi

# shellcheck disable=SC2086
"${LAUNCH[@]}" $ENTRY \
    "${DS[@]}" \
    --model_name_or_path "$MODEL" \
    --model_class_name LlavaSTQwen \
    --st_num_queries 8 \
    --version qwen_1_5 \
    --data_path "$DATA" \
    --image_folder "$DATA_ROOT" \
    --video_folder "$DATA_ROOT" \
    --mm_tunable_parts "mm_mlp_adapter,mm_language_model" \
    --vision_tower local/tiny-siglip-so400m-patch14-384 \
    --mm_projector_type mlp2x_gelu \
    --mm_vision_select_layer -2 \
    --mm_use_im_start_end False \
    --mm_use_im_patch_token False \
    --group_by_modality_length True \
    --image_aspect_ratio anyres_max_9 \
    --image_grid_pinpoints "[[384, 384], [384, 768], [768, 384], [768, 768]]" \
    --mm_patch_merge_type spatial_unpad \
    --mm_newline_position grid \
    --add_time_instruction True \
    --force_sample True \
    --frames_upbound 4 \
    --bf16 True \
    --attn_implementation sdpa \
    --output_dir "$OUTPUT" \
    --max_steps "${MAX_STEPS:-3}" \
    --per_device_train_batch_size 2 \
    --gradient_accumulation_steps 1 \
    --save_strategy steps \
    --save_steps "${SAVE_STEPS:-2}" \
    --learning_rate 1e-3 \
    --weight_decay 0. \
    --warmup_ratio 0.03 \
    --lr_scheduler_type cosine \
    --logging_steps 1 \
    --model_max_length 4096 \
    --gradient_checkpointing False \
    --dataloader_num_workers 0 \
    --lazy_preprocess True \
    --report_to none \
    --seed 0 \
    "$@"
