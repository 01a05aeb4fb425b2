"""Session-wide offline fixtures, built by code on first use and cached under .cache/test-fixtures.

The environment is set before anything imports huggingface_hub (which reads it at import time): the hub
is offline, and its cache is a directory of ours holding the tiny SigLIP tower upstream needs.
"""

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LLAVA_ST_TEST_CACHE", ROOT / ".cache" / "test-fixtures"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(CACHE / "hub")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

HAS_UPSTREAM = importlib.util.find_spec("llava") is not None
UPSTREAM_SKIP_REASON = (
    "upstream LLaVA-NeXT (package `llava`) is not installed: put its source at LLAVA_NEXT_SRC and run `make test`"
)


def pytest_collection_modifyitems(config, items):
    if HAS_UPSTREAM:
        return
    skip = pytest.mark.skip(reason=UPSTREAM_SKIP_REASON)
    for item in items:
        if "upstream" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    counts = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for rep in terminalreporter.stats.get(outcome, []):
            if "upstream" in getattr(rep, "keywords", {}):
                counts[outcome] = counts.get(outcome, 0) + 1
    ran = counts.get("passed", 0) + counts.get("failed", 0) + counts.get("error", 0)
    terminalreporter.write_line(
        f"upstream tests: {ran} ran ({counts.get('passed', 0)} passed), {counts.get('skipped', 0)} skipped"
        + ("" if HAS_UPSTREAM else f" — {UPSTREAM_SKIP_REASON}")
    )


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


@pytest.fixture(scope="session")
def qwen_tokenizer(cache_dir):
    """Qwen2TokenizerFast over Qwen's first 4,000 BPE ranks (+ the 3 chat tokens at 4000-4002)."""
    from llava_st.testing import build_qwen_tokenizer

    return build_qwen_tokenizer(cache_dir / "tokenizer-4k", vocab_size=4000)


@pytest.fixture(scope="session")
def qwen_tokenizer_full(cache_dir):
    """Qwen2TokenizerFast over all 151,643 Qwen BPE ranks (chat tokens at 151643-151645)."""
    from llava_st.testing import build_qwen_tokenizer

    return build_qwen_tokenizer(cache_dir / "tokenizer-full", vocab_size=None)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(cache_dir, qwen_tokenizer) -> Path:
    """A saved random Qwen2ForCausalLM (hidden 64, 2 layers) with the small tokenizer, in a directory
    whose name contains 'qwen' (upstream picks classes by path substrings)."""
    from llava_st.testing import build_tiny_qwen2

    return build_tiny_qwen2(cache_dir / "tiny-qwen2", qwen_tokenizer)


@pytest.fixture(scope="session")
def tiny_siglip_repo(cache_dir) -> str:
    """Repo id of a random tiny SigLIP tower (hidden 1152, 384 px, patch 14) in the offline hub cache."""
    from llava_st.testing import build_tiny_siglip_hub

    return build_tiny_siglip_hub(cache_dir / "hub")


@pytest.fixture(scope="session")
def moving_box_video(cache_dir):
    """(path, boxes): a 40-frame 10 fps 96x64 mp4, a red box visible on frames 10..29 moving right;
    boxes is float [40, 4] pixel xyxy (NaN where the box is absent)."""
    from llava_st.testing import write_moving_box_video

    return write_moving_box_video(cache_dir / "videos" / "moving_box.mp4", num_frames=40, fps=10.0, span=(10, 29))


@pytest.fixture(scope="session")
def tiny_llava_qwen_dir(cache_dir, qwen_tokenizer, tiny_siglip_repo) -> Path:
    """A saved random upstream LlavaQwenForCausalLM (tiny Qwen2 + tiny SigLIP + mlp2x_gelu, LLaVA-Video's
    settings) with the small tokenizer, in a directory named for upstream's path rules. Needs `llava`."""
    from llava_st.testing.upstream import build_tiny_llava_qwen

    return build_tiny_llava_qwen(cache_dir / "tiny-llava-qwen", qwen_tokenizer, tiny_siglip_repo)


@pytest.fixture(scope="session")
def tiny_st_checkpoint(cache_dir, qwen_tokenizer) -> Path:
    """A saved random tiny transformers-host ST checkpoint (8 queries), loadable with llava_st.api.load_grounder."""
    from llava_st.testing.hf import build_tiny_st

    out = cache_dir / "tiny-st-eval"
    build_tiny_st(qwen_tokenizer, out_dir=str(out))
    return out


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op torch thread for a test module (restored after it). On 2 shared cores, two threads
    were measured 5-20x slower than one for tiny models because of thread synchronisation."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
