#!/bin/bash
# Paper Table 7, row 2: all queries after the whole video instead of interleaved with the frames.
# Only difference from spacevllm_7b.sh: --st_query_mode after.
exec bash "$(dirname "$0")/../spacevllm_7b.sh" --st_query_mode after "$@"
