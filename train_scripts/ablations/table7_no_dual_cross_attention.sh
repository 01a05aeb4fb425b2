#!/bin/bash
# Paper Table 7, row 3: the query's hidden state goes straight to the space head (no dual cross
# attention). Only difference from spacevllm_7b.sh: --st_dual_cross_attention False.
exec bash "$(dirname "$0")/../spacevllm_7b.sh" --st_dual_cross_attention False "$@"
