#!/bin/bash
# Paper Table 7, row 1: no queries and no space decoder; STVG/REC answers carry every box as text
# (core.boxtext). Only difference from spacevllm_7b.sh: --st_query_mode none.
exec bash "$(dirname "$0")/../spacevllm_7b.sh" --st_query_mode none "$@"
