#!/bin/bash
# Paper Table 9: the number of queries N_v (32 / 64 / 96), which is also the number of sampled frames.
# Only difference from spacevllm_7b.sh: --st_num_queries N --frames_upbound N (N = $1, default 32).
N=${1:-32}
shift || true
exec bash "$(dirname "$0")/../spacevllm_7b.sh" --st_num_queries "$N" --frames_upbound "$N" "$@"
