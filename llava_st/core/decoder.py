"""Query-Guided Space Decoder (paper §3.1.3, eq. 3-4).

On the LLM's last-layer hidden states, for every frame i:
    V'_eh_i = Attn(Q'_v_i, K_t, V_t)         visual tokens of frame i attend to the description tokens
    S_i     = Attn(Q'_s_i, V'_eh_i, V'_eh_i)  frame i's query attends to those text-enhanced tokens
    b_i     = sigmoid(MLP(S_i))               (cx, cy, w, h) in [0, 1] of the frame as the model saw it
The paper's attention has no parameters and no residual; both are options here (STConfig), as is a
reference point (decoder_reference): b_i's centre = sigmoid(MLP(S_i)_xy + logit(r_i)), r_i the mean of
frame i's token centres weighted by the second attention.
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


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_mask: torch.Tensor, with_weights: bool = False):
    """Scaled dot-product attention in float32. query [..., Q, D], key/value [..., K, D], key_mask
    [..., K] (bool) -> [..., Q, D], and the weights [..., Q, K] with `with_weights`. Rows with no valid
    key return zeros."""
    scores = query.float() @ key.float().transpose(-1, -2) / math.sqrt(query.shape[-1])  # [..., Q, K]
    scores = scores.masked_fill(~key_mask[..., None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    out = (weights @ value.float()).to(value.dtype)
    return (out, weights) if with_weights else out


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


def grid_centres(visual_mask: torch.Tensor) -> torch.Tensor:
    """Centres of each frame's visual tokens read as a row-major g x g grid, g = sqrt(tokens of the frame).
    visual_mask [B, F, S] (bool) -> centres [B, F, S, 2] (x, y) normalised to [0, 1]; 0.5 for every token
    of a frame whose token count is not a perfect square."""
    count = visual_mask.sum(-1)  # [B, F]
    side = count.float().sqrt().round().long()
    square = (side * side == count) & (count > 0)
    s = torch.arange(visual_mask.shape[-1], device=visual_mask.device)
    g = side.clamp(min=1)[..., None]  # [B, F, 1]
    x = ((s % g).float() + 0.5) / g
    y = (torch.div(s, g, rounding_mode="floor").float() + 0.5) / g
    centres = torch.stack([x, y], dim=-1)
    return torch.where(square[..., None, None], centres, torch.full_like(centres, 0.5))


class SpaceHead(nn.Module):
    """MLP [..., D] -> [..., 4] sigmoid (cx, cy, w, h), normalised; with `reference` [..., 2] (x, y in (0, 1))
    the centre logits are offsets from the reference's logit."""

    def __init__(self, dim: int, hidden: int, layers: int):
        super().__init__()
        dims = [dim] + [hidden] * (layers - 1) + [4]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, reference: torch.Tensor = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        if reference is not None:
            x = torch.cat([x[..., :2] + torch.logit(reference.to(x.dtype), eps=1e-4), x[..., 2:]], dim=-1)
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
        self.reference = config.decoder_reference
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
        reference = None
        if self.dual_cross_attention:
            visual = _gather(hidden, index.visual_index)  # [B, F, S, D]
            text = _gather(hidden, index.text_index)  # [B, T, D]
            enhanced = self._text_enhance(visual, text, index.text_mask)  # [B, F, S, D]
            queries, weights = self._query_attend(queries, enhanced, index.visual_mask)  # [B, F, D], [B, F, S]
            if self.reference:
                centres = grid_centres(index.visual_mask)  # [B, F, S, 2]
                reference = (weights[..., None] * centres).sum(-2).clamp(1e-4, 1 - 1e-4)  # [B, F, 2]
        return self.head(queries, reference)

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
        """(S_i [B, F, D], the attention weights [B, F, S] of each frame's query over its visual tokens)."""
        q, k, v = queries[:, :, None], enhanced, enhanced  # [B, F, 1, D], [B, F, S, D]
        if self.query_proj is not None:
            q, k, v = self.query_proj.q(q), self.query_proj.k(k), self.query_proj.v(v)
        out, weights = _attend(q, k, v, visual_mask, with_weights=True)
        out, weights = out[:, :, 0], weights[:, :, 0]  # [B, F, D], [B, F, S]
        return (out + queries if self.residual else out), weights
