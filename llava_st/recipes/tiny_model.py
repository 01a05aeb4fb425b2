"""The tiny LLaVA-OneVision models of the demo recipe, built offline (also what the tests and benchmarks
build): a Qwen2 tokenizer from Qwen's own BPE ranks, tiny Qwen2 and SigLIP configs, a SigLIP tower in a
local hub cache for upstream LLaVA-NeXT, and tiny transformers-host ST models.

Every builder writes into a directory and is idempotent: a second call with the same arguments reuses
what is there. The BPE ranks come from the `dashscope` package on PyPI (`pip install 'llava_st[recipe]'`).
Defaults of the transformers-host models: SigLIP hidden 32, 32 px images, patch 8 (a 4 x 4 patch grid, 4
pooled tokens per video frame), Qwen2 hidden 64 with 2 layers over the given tokenizer.
"""

import base64
import copy
from pathlib import Path
from typing import Optional

QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen's pre-tokenizer regex (the one Qwen2TokenizerFast uses).
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def qwen_bpe_ranks_path() -> Path:
    """The Qwen BPE ranks file (`qwen.tiktoken`, 151,643 ranks) shipped inside the `dashscope` package
    from PyPI (installed by the dev extra). Located through package metadata, without importing it."""
    from importlib import metadata

    try:
        dist = metadata.distribution("dashscope")
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError("the Qwen BPE ranks come from the 'dashscope' package: pip install 'llava_st[recipe]'") from exc
    path = Path(dist.locate_file("dashscope/resources/qwen.tiktoken"))
    if not path.is_file():
        raise RuntimeError(f"dashscope is installed but {path} is missing")
    return path


def _bytes_to_unicode():
    """GPT-2's byte -> printable unicode map used by ByteLevel BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build_qwen_tokenizer(out_dir, vocab_size: Optional[int] = 4000):
    """Build a `Qwen2TokenizerFast` from Qwen's own BPE ranks and save it to `out_dir`.

    vocab_size: keep the first N ranks (a small consistent vocabulary); None keeps all 151,643.
    The chat tokens follow the BPE vocabulary: <|endoftext|>, <|im_start|>, <|im_end|> at N, N+1, N+2
    (151643/4/5 for the full vocabulary); <|im_start|>/<|im_end|> are the two additional special tokens
    upstream's preprocess_qwen expects. Token 198 is "\\n" as in Qwen. Returns the loaded tokenizer.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    out = Path(out_dir)
    if (out / "tokenizer.json").is_file():
        return Qwen2TokenizerFast.from_pretrained(str(out))
    ranks = {}
    with open(qwen_bpe_ranks_path(), "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                rank = int(rank)
                if vocab_size is None or rank < vocab_size:
                    ranks[base64.b64decode(token)] = rank
    byte_map = _bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(byte_map[x] for x in b)

    vocab = {to_str(t): r for t, r in ranks.items()}
    merges = []
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        local = [
            (token[:i], token[i:], rank)
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        local.sort(key=lambda m: (ranks[m[0]], ranks[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2])
    merges = [(to_str(a), to_str(b)) for a, b, _ in merges]

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=32768,
    )
    fast.chat_template = QWEN_CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return Qwen2TokenizerFast.from_pretrained(str(out))


def tiny_qwen2_config(vocab_size: int, hidden_size: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2, **overrides):
    """A transformers Qwen2Config with tiny dimensions (hidden 64, 2 layers, 4 heads by default)."""
    from transformers import Qwen2Config

    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    kwargs.update(overrides)
    return Qwen2Config(**kwargs)


def build_tiny_qwen2(out_dir, tokenizer, seed: int = 0, **config_overrides):
    """Save a random tiny Qwen2ForCausalLM (and the tokenizer) to `out_dir`; return the directory.
    The embedding has exactly len(tokenizer) rows, rounded up to a multiple of 64 like Qwen's spare rows."""
    import torch
    from transformers import Qwen2ForCausalLM

    out = Path(out_dir)
    if (out / "config.json").is_file():
        return out
    vocab = ((len(tokenizer) + 63) // 64) * 64
    cfg = tiny_qwen2_config(vocab, **config_overrides)
    cfg.bos_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    cfg.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def tiny_siglip_config(hidden_size: int = 1152, image_size: int = 384, patch_size: int = 14, layers: int = 2, heads: int = 16,
                       intermediate_size: int = 64):
    """SigLIP vision config. Defaults are what upstream's SigLipVisionTower accepts (hidden 1152, 384 px,
    patch 14 -> 729 tokens; it drops the last layer, so 2 layers leave 1)."""
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=hidden_size,
        image_size=image_size,
        patch_size=patch_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate_size,
    )


TINY_SIGLIP_REPO = "local/tiny-siglip-so400m-patch14-384"


def build_tiny_siglip_hub(hub_cache_dir, repo_id: str = TINY_SIGLIP_REPO, seed: int = 0) -> str:
    """Write a random tiny SigLIP vision model into a hub-cache layout under `hub_cache_dir`
    (models--<org>--<name>/snapshots/<rev>/, refs/main) so that with HF_HUB_CACHE=hub_cache_dir and
    HF_HUB_OFFLINE=1, `from_pretrained(repo_id)` finds it without a network. Returns `repo_id`.

    Upstream routes any existing local path to its CLIP tower; a repo id containing "siglip" reaches its
    SigLipVisionTower instead, which is why a fake cache is needed.
    """
    import torch
    from transformers import SiglipImageProcessor, SiglipVisionModel

    root = Path(hub_cache_dir) / ("models--" + repo_id.replace("/", "--"))
    revision = "0" * 40
    snap = root / "snapshots" / revision
    if (snap / "config.json").is_file():
        return repo_id
    torch.manual_seed(seed)
    cfg = tiny_siglip_config()
    model = SiglipVisionModel(cfg)
    snap.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(snap), safe_serialization=True)
    SiglipImageProcessor(size={"height": cfg.image_size, "width": cfg.image_size}).save_pretrained(str(snap))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return repo_id


def tiny_onevision_config(tokenizer, image_size: int = 32, patch_size: int = 8, vision_hidden: int = 32, text_hidden: int = 64,
                          text_layers: int = 2):
    """A LlavaOnevisionConfig with a tiny SigLIP tower and a tiny Qwen2 over `tokenizer`'s vocabulary
    (rounded up to a multiple of 64 rows, like Qwen's spare rows)."""
    from transformers import LlavaOnevisionConfig

    vision = tiny_siglip_config(hidden_size=vision_hidden, image_size=image_size, patch_size=patch_size, layers=2, heads=2,
                                intermediate_size=2 * vision_hidden)
    vocab = ((len(tokenizer) + 63) // 64) * 64
    text = tiny_qwen2_config(vocab, hidden_size=text_hidden, layers=text_layers)
    text.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return LlavaOnevisionConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_token_index=vocab - 2,
        video_token_index=vocab - 1,
        image_grid_pinpoints=[[image_size * h, image_size * w] for h in (1, 2, 3) for w in (1, 2, 3)],
    )


def build_tiny_st(tokenizer, st=None, seed: int = 0, out_dir: Optional[str] = None, **config_kwargs):
    """A random tiny ST model and its processor (a copy of `tokenizer` gets the new tokens).

    st: core STConfig (default: 8 queries, the paper's layout). With `out_dir` the checkpoint is saved
    there, or loaded from there when it already exists. Returns (model, processor).
    """
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    from ..core.config import STConfig
    from ..hosts.hf import convert_base, is_st_checkpoint, load_st_model, save_st_model

    if out_dir is not None and is_st_checkpoint(out_dir):
        return load_st_model(out_dir)[1:]
    st = st or STConfig(num_queries=8)
    torch.manual_seed(seed)
    base = LlavaOnevisionForConditionalGeneration(tiny_onevision_config(tokenizer, **config_kwargs))
    model, processor = convert_base(base, copy.deepcopy(tokenizer), st)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        save_st_model(model, processor, out_dir)
    return model.eval(), processor


def save_tiny_onevision(out_dir, tokenizer, seed: int = 0, **config_kwargs) -> str:
    """Save a random plain (non-ST) tiny LLaVA-OneVision model and `tokenizer` to `out_dir`: the kind of
    base checkpoint hosts.hf.train.train_hf converts. Returns the directory."""
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(tiny_onevision_config(tokenizer, **config_kwargs))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return str(out_dir)
