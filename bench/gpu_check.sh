#!/usr/bin/env bash
# GPU check (issue 17, item 4): bench/gpu_check.py on one CUDA GPU (H100/H200), in a venv of its own made
# from requirements.lock. `bash bench/gpu_check.sh [gpu_check.py options]`; writes bench/results/gpu_check.json
# and regenerates the README's performance section.
#
#   1. venv ($GPU_CHECK_VENV, default .venv-gpu): `pip install --require-hashes --no-deps -r requirements.lock`,
#      `pip install --no-deps -e .`, upstream LLaVA-NeXT (--no-deps -e $LLAVA_NEXT_SRC, default ~/LLaVA-NeXT);
#      made once and reused while the lock and pyproject.toml are unchanged (a stamp file holds their hash);
#      pip's own settings (PIP_INDEX_URL, PIP_FIND_LINKS for a wheelhouse on a machine without network) apply.
#   2. flash-attn only when a wheel installs (never built from source): $FLASH_ATTN_WHEEL (a file or URL)
#      if set, else `pip install --only-binary :all: --no-deps flash-attn`; otherwise sdpa alone. The
#      outcome is recorded in the JSON (environment.flash_attn).
#   3. bench/gpu_check.py under `timeout $GPU_CHECK_TIMEOUT` (default 480 s: the check's 8 minutes; the
#      install of step 1 is not counted and is recorded as environment.install_s). The script writes its
#      JSON after every phase and skips the training runs when its budget (timeout - 30 s) runs out.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${GPU_CHECK_VENV:-$ROOT/.venv-gpu}
PYTHON=${PYTHON:-python3}
LLAVA_NEXT_SRC=${LLAVA_NEXT_SRC:-$HOME/LLaVA-NeXT}
TIMEOUT=${GPU_CHECK_TIMEOUT:-480}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
    echo "[gpu_check] nvidia-smi not found: this check needs a CUDA GPU (bench/gpu_check.py --dry-run runs on a CPU)" >&2
fi

STAMP="$VENV/.gpu-check-$(cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)"
INSTALL_S=0
if [ ! -f "$STAMP" ]; then
    begin=$(date +%s)
    echo "[gpu_check] creating $VENV from requirements.lock (exact versions, hashes checked)"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    "${PIP[@]}" install --require-hashes --no-deps -r requirements.lock
    "${PIP[@]}" install --no-deps --no-build-isolation -e .
    if [ -f "$LLAVA_NEXT_SRC/llava/__init__.py" ]; then
        "${PIP[@]}" install --no-deps --no-build-isolation -e "$LLAVA_NEXT_SRC"
    else
        echo "[gpu_check] upstream LLaVA-NeXT not found at LLAVA_NEXT_SRC=$LLAVA_NEXT_SRC (needed: the model is its LlavaQwen)" >&2
        exit 2
    fi
    FLASH="not installed: no wheel"
    if [ -n "${FLASH_ATTN_WHEEL:-}" ]; then
        if "${PIP[@]}" install --no-deps "$FLASH_ATTN_WHEEL"; then FLASH="installed from $FLASH_ATTN_WHEEL"; fi
    elif timeout 180 "${PIP[@]}" install --no-deps --only-binary :all: flash-attn; then
        FLASH="installed (wheel from the index)"
    fi
    if [[ "$FLASH" == installed* ]] && ! "$VENV/bin/python" -c "import flash_attn" 2>/dev/null; then
        FLASH="not usable: the wheel installed but does not import with this torch"
        "${PIP[@]}" uninstall -y flash-attn || true
    fi
    rm -f "$VENV"/.gpu-check-*
    echo "$FLASH" > "$STAMP"
    INSTALL_S=$(( $(date +%s) - begin ))
    echo "[gpu_check] venv ready in ${INSTALL_S} s; flash-attn: $FLASH"
fi
FLASH=$(cat "$STAMP")

"$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch ' + torch.__version__ + ' sees no CUDA GPU')"
ARGS=(--budget-s "$(( TIMEOUT - 30 ))" --install-seconds "$INSTALL_S" --flash-attn-status "$FLASH")
if [[ "$FLASH" == installed* ]]; then ARGS+=(--flash-attn); fi
status=0
timeout "$TIMEOUT" "$VENV/bin/python" bench/gpu_check.py "${ARGS[@]}" "$@" || status=$?
if [ "$status" -eq 124 ]; then
    echo "[gpu_check] stopped after ${TIMEOUT} s; bench/results/gpu_check.json holds the phases that finished" >&2
fi
if [ -f bench/results/gpu_check.json ]; then
    "$VENV/bin/python" -m bench.readme_table
    echo "[gpu_check] bench/results/gpu_check.json written; README performance section regenerated"
fi
exit "$status"
