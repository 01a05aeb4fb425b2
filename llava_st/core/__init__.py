"""The host-agnostic core of llava_st: pure torch, never imports a host."""

from .boxes import cxcywh_to_xyxy, denormalize_xyxy, normalize_xyxy, paired_box_iou, temporal_iou, xyxy_to_cxcywh
from .config import STConfig
from .decoder import QueryGuidedSpaceDecoder
from .layout import (
    GROUNDING_LAYOUT_KEYS,
    BlockLayout,
    GroundingIndex,
    block_layout,
    build_visual_block,
    description_token_positions,
    layout_ids,
)
from .losses import combine_losses, space_loss
from .timespan import format_span, parse_span, snap_span, span_frame_mask, time_instruction
from .tokens import QueryTokens, add_query_tokens, init_query_embeddings, query_token_names
from .tube import assemble_tube, tubes_to_csv, tubes_to_json

__all__ = [
    "STConfig",
    "QueryGuidedSpaceDecoder",
    "BlockLayout",
    "GroundingIndex",
    "GROUNDING_LAYOUT_KEYS",
    "block_layout",
    "layout_ids",
    "build_visual_block",
    "description_token_positions",
    "space_loss",
    "combine_losses",
    "format_span",
    "parse_span",
    "snap_span",
    "span_frame_mask",
    "time_instruction",
    "QueryTokens",
    "add_query_tokens",
    "init_query_embeddings",
    "query_token_names",
    "assemble_tube",
    "tubes_to_csv",
    "tubes_to_json",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "normalize_xyxy",
    "denormalize_xyxy",
    "paired_box_iou",
    "temporal_iou",
]
