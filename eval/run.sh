#!/usr/bin/env bash
# Sharded evaluation of a llava_st checkpoint with torchrun: one process per GPU, each predicting its
# shard into OUT/predictions.rank*.jsonl; rank 0 merges and writes OUT/metrics.json and OUT/table.md.
# Run the same command again after a crash: finished samples are skipped, metrics come out identical.
#
#   CKPT=ckpt DATA_ROOT=/data/hcstvg bash eval/run.sh stvg hcstvg-v1 --data test=hcstvg_v1_test.jsonl
#   CKPT=ckpt DATA_ROOT=/data/coco   bash eval/run.sh rec refcoco --data val=val.jsonl --data testA=testA.jsonl --data testB=testB.jsonl
#
# NPROC (default: the number of GPUs, at least 1), OUT (default runs/eval/<benchmark>); further
# arguments go to `llava-st eval` (--frames, --convention, --viz N, --max-new-tokens; see --help).
set -euo pipefail
if [ $# -lt 2 ] || [ -z "${CKPT:-}" ]; then
    sed -n '2,11p' "$0"
    exit 2
fi
TASK=$1
BENCHMARK=$2
shift 2
PYTHON=${PYTHON:-python}
NPROC=${NPROC:-$($PYTHON -c "import torch; print(max(torch.cuda.device_count(), 1))")}
OUT=${OUT:-runs/eval/$BENCHMARK}
exec $PYTHON -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m llava_st.eval.cli "$TASK" \
    --benchmark "$BENCHMARK" --checkpoint "$CKPT" --data-root "${DATA_ROOT:-.}" --out "$OUT" "$@"
