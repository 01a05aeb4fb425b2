"""Query-Guided Space Decoder (paper §3.1.3, eq. 3-4).

On the LLM's last-layer hidden states, for every frame i:
    V'_eh_i = Attn(Q'_v_i, K_t, V_t)         visual tokens of frame i attend to the description tokens
    S_i     = Attn(Q'_s_i, V'_eh_i, V'_eh_i)  frame i's query attends to those text-enhanced tokens
    b_i     = sigmoid(MLP(S_i))               (cx, cy, w, h) in [0, 1] of the frame as the model saw it
The paper's attention has no parameters and no residual; both are options here (STConfig).
"""

import math

import torch
from torch import nn

from .config import STConfig
from .layout import GroundingIndex


def _gather(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, D], index [B, ...] -> [B, ..., D]."""
    B, L, D = hidden.shape
    flat = index.reshape(B, -1)
    out = torch.gather(hidden, 1, flat[..., None].expand(-1, -1, D))
    return out.reshape(*index.shape, D)


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention in float32. query [..., Q, D], key/value [..., K, D], key_mask
    [..., K] (bool). Rows with no valid key return zeros."""
    scores = query.float() @ key.float().transpose(-1, -2) / math.sqrt(query.shape[-1])  # [..., Q, K]
    scores = scores.masked_fill(~key_mask[..., None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return (weights @ value.float()).to(value.dtype)


class _Projections(nn.Module):
    """Learned q/k/v projections for one attention (option `decoder_projections`), identity at init."""

    def __init__(self, dim: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.q, self.k, self.v):
            nn.init.eye_(lin.weight)
            nn.init.zeros_(lin.bias)


class SpaceHead(nn.Module):
    """MLP [..., D] -> [..., 4] sigmoid (cx, cy, w, h), normalised."""

    def __init__(self, dim: int, hidden: int, layers: int):
        super().__init__()
        dims = [dim] + [hidden] * (layers - 1) + [4]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x.sigmoid()


class QueryGuidedSpaceDecoder(nn.Module):
    """Maps query hidden states to one box per frame.

    forward(hidden [B, L, D], index: GroundingIndex) -> boxes [B, F, 4] normalised cxcywh; padded frames
    (index.frame_mask False) hold whatever the head gives for position 0 and must be masked by the caller.
    """

    def __init__(self, hidden_size: int, config: STConfig):
        super().__init__()
        self.dual_cross_attention = config.dual_cross_attention
        self.residual = config.decoder_residual
        self.text_proj = _Projections(hidden_size) if config.decoder_projections else None
        self.query_proj = _Projections(hidden_size) if config.decoder_projections else None
        self.head = SpaceHead(hidden_size, config.head_hidden or hidden_size, config.head_layers)

    def reset_parameters(self) -> None:
        """The decoder's own initialisation: projections as identities, the head's layers as PyTorch's
        default nn.Linear. Hosts call this from their `_init_weights`, whose std-0.02 normal init (the
        LLM's) through three head layers puts every box on the mean box and starves its gradients."""
        for proj in (self.text_proj, self.query_proj):
            if proj is not None:
                proj.reset_parameters()
        for layer in self.head.layers:
            layer.reset_parameters()

    def forward(self, hidden: torch.Tensor, index: GroundingIndex) -> torch.Tensor:
        index = index.to(hidden.device)
        dtype = self.head.layers[0].weight.dtype
        hidden = hidden.to(dtype)
        queries = _gather(hidden, index.query_index)  # [B, F, D]
        if self.dual_cross_attention:
            visual = _gather(hidden, index.visual_index)  # [B, F, S, D]
            text = _gather(hidden, index.text_index)  # [B, T, D]
            enhanced = self._text_enhance(visual, text, index.text_mask)  # [B, F, S, D]
            queries = self._query_attend(queries, enhanced, index.visual_mask)  # [B, F, D]
        return self.head(queries)

    def _text_enhance(self, visual, text, text_mask):
        B, F, S, D = visual.shape
        q, k, v = visual.reshape(B, F * S, D), text, text
        if self.text_proj is not None:
            q, k, v = self.text_proj.q(q), self.text_proj.k(k), self.text_proj.v(v)
        out = _attend(q, k, v, text_mask).reshape(B, F, S, D)
        # A sample without description tokens keeps its visual states instead of zeros.
        has_text = text_mask.any(-1)[:, None, None, None]
        out = torch.where(has_text, out, visual)
        return out + visual if self.residual else out

    def _query_attend(self, queries, enhanced, visual_mask):
        q, k, v = queries[:, :, None], enhanced, enhanced  # [B, F, 1, D], [B, F, S, D]
        if self.query_proj is not None:
            q, k, v = self.query_proj.q(q), self.query_proj.k(k), self.query_proj.v(v)
        out = _attend(q, k, v, visual_mask)[:, :, 0]  # [B, F, D]
        return out + queries if self.residual else out
