"""Analytic forward FLOPs of LLaVA-Video (SigLIP + mlp2x_gelu projector + Qwen2) and of what SpaceVLLM adds:
the N_v query tokens in the LLM sequence and the Query-Guided Space Decoder (paper-faithful default:
no projections, no residual; head of `head_layers` linear layers of width D).

FLOPs count 2 per multiply-add, matmuls only (norms, activations, softmax are < 1% and left out).
Causal self-attention over L tokens costs 2 * L^2 * D per layer (QK^T and AV, half the matrix each).
"""

from typing import Dict

SIGLIP_SO400M = dict(hidden=1152, intermediate=4304, layers=26, patches=729, patch=14)  # 27 layers, upstream uses up to -2


def llm_flops(tokens: int, hidden: int, layers: int, intermediate: int, heads: int, kv_heads: int, vocab: int, logits_tokens: int) -> float:
    """Forward FLOPs of a Qwen2 LLM on `tokens` tokens (causal), logits on `logits_tokens` positions."""
    head_dim = hidden // heads
    per_token = 2 * (hidden * hidden * 2 + 2 * hidden * kv_heads * head_dim + 3 * hidden * intermediate)  # q, o, k, v, MLP
    attention = 2 * tokens * tokens * hidden  # per layer, causal
    return layers * (tokens * per_token + attention) + 2 * hidden * vocab * logits_tokens


def vision_flops(frames: int, llm_hidden: int, tower: Dict = SIGLIP_SO400M) -> float:
    """SigLIP + mlp2x_gelu projector (applied to all 729 patches before pooling) for `frames` frames."""
    n, d, i = tower["patches"], tower["hidden"], tower["intermediate"]
    embed = 2 * n * tower["patch"] ** 2 * 3 * d
    layer = 2 * n * (4 * d * d + 2 * d * i) + 4 * n * n * d  # linears + full (non-causal) attention
    projector = 2 * n * (d * llm_hidden + llm_hidden * llm_hidden)
    return frames * (embed + tower["layers"] * layer + projector)


def decoder_flops(frames: int, tokens_per_frame: int, text_tokens: int, hidden: int, head_layers: int = 3, head_hidden: int = 0) -> float:
    """Query-Guided Space Decoder on `frames` frames: text-enhance (S x T attention per frame), the
    query's attention over S tokens, the MLP head."""
    S, T, D, H = tokens_per_frame, text_tokens, hidden, head_hidden or hidden
    text_enhance = 4 * S * T * D
    query_attend = 4 * S * D
    dims = [D] + [H] * (head_layers - 1) + [4]
    head = sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))
    return frames * (text_enhance + query_attend + head)


def st_overhead(frames: int, tokens_per_frame: int, text_tokens: int, description_tokens: int, config: Dict,
                training: bool = True) -> Dict[str, float]:
    """FLOPs of one forward of LLaVA-Video with and without the ST parts, and their ratios.

    config: the LLM (QWEN2_7B's keys); text_tokens: prompt + answer text tokens; description_tokens:
    tokens the decoder attends to.
    training: logits on every position (upstream's forward) rather than on the last one.
    """
    base_tokens = frames * tokens_per_frame + text_tokens
    st_tokens = base_tokens + frames

    def llm(n):
        return llm_flops(n, config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"], config["num_attention_heads"],
                         config["num_key_value_heads"], config.get("vocab_size", 0), n if training else 1)

    vision = vision_flops(frames, config["hidden_size"])
    base = vision + llm(base_tokens)
    queries = llm(st_tokens) - llm(base_tokens)
    decoder = decoder_flops(frames, tokens_per_frame, description_tokens, config["hidden_size"])
    return {
        "frames": frames,
        "sequence_tokens": base_tokens,
        "vision_gflops": vision / 1e9,
        "llm_gflops": llm(base_tokens) / 1e9,
        "queries_gflops": queries / 1e9,
        "decoder_gflops": decoder / 1e9,
        "overhead_over_llava_video": (queries + decoder) / base,
        "overhead_over_llm_only": (queries + decoder) / llm(base_tokens),
    }
