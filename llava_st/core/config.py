"""The spatio-temporal options every host shares (paper §3.1 and the ablations of Tables 7 and 9)."""

from dataclasses import asdict, dataclass, fields
from typing import Optional

QUERY_MODES = ("interleave", "after", "none")


@dataclass
class STConfig:
    """Options of the SpaceVLLM method, independent of any host.

    num_queries: N_v, the number of spatio-temporal aware queries for video (the paper's 64; Table 9
        compares 32/64/96). One more terminal query is added for images, so N_v + 1 tokens exist.
    query_mode: "interleave" puts query i right after frame i's visual tokens (the method);
        "after" puts all queries after the whole video (Table 7, row 2); "none" uses no queries and no
        decoder, boxes are answered as text (Table 7, row 1).
    dual_cross_attention: False feeds the query hidden state straight to the space head (Table 7, row 3).
    decoder_residual: add the attention inputs back to their outputs (an option; the paper has none).
    decoder_projections: learned query/key/value projections in both attentions (an option; the paper
        has none; on a randomly initialised backbone they are what lets the decoder learn position).
    decoder_reference: start each box's centre at the point its query attends to (an option; the paper
        has none): the query's attention weights over its frame's visual tokens, a row-major g x g grid,
        give the weighted mean of the token centres, and the head's centre logits are added to that
        reference's logit (the reference points of Deformable DETR, Zhu et al. 2021), so locating the
        target is choosing its tokens and the head refines within them. Needs dual_cross_attention;
        a frame whose token count is not a square (an image's anyres run) keeps the frame centre.
    head_layers, head_hidden: the space head MLP; head_hidden 0 means the LLM's hidden size.
    lambda_*: loss weights of eq. 5-6.
    """

    num_queries: int = 64
    query_mode: str = "interleave"
    dual_cross_attention: bool = True
    decoder_residual: bool = False
    decoder_projections: bool = False
    decoder_reference: bool = False
    head_layers: int = 3
    head_hidden: int = 0
    lambda_time: float = 1.0
    lambda_space: float = 1.0
    lambda_l1: float = 3.0
    lambda_giou: float = 1.0

    def __post_init__(self):
        if not isinstance(self.num_queries, int) or self.num_queries < 1:
            raise ValueError(f"num_queries must be a positive int, got {self.num_queries!r}")
        if self.query_mode not in QUERY_MODES:
            raise ValueError(f"query_mode must be one of {QUERY_MODES}, got {self.query_mode!r}")
        if self.decoder_reference and not self.dual_cross_attention:
            raise ValueError("decoder_reference needs dual_cross_attention (the reference is where the query attends)")
        if not isinstance(self.head_layers, int) or self.head_layers < 1:
            raise ValueError(f"head_layers must be an int >= 1, got {self.head_layers!r}")
        if not isinstance(self.head_hidden, int) or self.head_hidden < 0:
            raise ValueError(f"head_hidden must be an int >= 0, got {self.head_hidden!r}")
        for name in ("lambda_time", "lambda_space", "lambda_l1", "lambda_giou"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")

    @property
    def uses_decoder(self) -> bool:
        return self.query_mode != "none"

    def to_dict(self, prefix: str = "st_") -> dict:
        """The options as flat config attributes, e.g. {"st_num_queries": 64, ...}."""
        return {prefix + k: v for k, v in asdict(self).items()}

    @classmethod
    def pop_from(cls, kwargs: dict, prefix: str = "st_") -> "STConfig":
        """The options given in `kwargs` as `st_<name>` (removed from it; the others get their defaults),
        validated: what a host config's __init__ takes, so no host lists the options again."""
        return cls(**{f.name: kwargs.pop(prefix + f.name) for f in fields(cls) if prefix + f.name in kwargs})

    @classmethod
    def from_object(cls, obj, prefix: str = "st_") -> "STConfig":
        """Read the options back from attributes (a transformers config, an argparse namespace)."""
        kwargs = {}
        for f in fields(cls):
            if hasattr(obj, prefix + f.name):
                kwargs[f.name] = getattr(obj, prefix + f.name)
        return cls(**kwargs)


def check_query_token_ids(ids, num_queries: int):
    """The ids of the query tokens <r_0> ... <r_N> (N = num_queries: N_v video queries + the terminal image
    query) as ints, or None before the tokens were added; ValueError when there are not N + 1 of them."""
    if ids is None:
        return None
    ids = [int(i) for i in ids]
    if len(ids) != num_queries + 1:
        raise ValueError(f"st_query_token_ids must hold st_num_queries + 1 = {num_queries + 1} ids, got {len(ids)}")
    return ids


# Frames per video a grounder samples at most when the model has no video queries (query_mode "none",
# boxes as text); with queries the bound is N_v, one query per frame.
MAX_FRAMES_WITHOUT_QUERIES = 256


def max_frames(num_queries: int, query_mode: str) -> int:
    """The most frames a model of these options can ground in one video: N_v, or MAX_FRAMES_WITHOUT_QUERIES
    without queries."""
    return MAX_FRAMES_WITHOUT_QUERIES if query_mode == "none" else int(num_queries)


def default_frames(num_queries: int, frames_upbound: Optional[int] = None) -> int:
    """Frames a grounder samples per video when the caller gives none, on both hosts: the checkpoint's
    training `frames_upbound` when it records one (the LLaVA-NeXT host's config), else one per video
    query (N_v = num_queries); never more than N_v."""
    return min(frames_upbound or num_queries, num_queries)


def check_frames(frames, num_queries: int, query_mode: str) -> int:
    """`frames` when it is an integer in [1, max_frames(num_queries, query_mode)]; ValueError otherwise,
    before anything is read or allocated."""
    upper = max_frames(num_queries, query_mode)
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise ValueError(f"frames must be an integer from 1 to {upper}, got {frames!r}")
    if not 1 <= frames <= upper:
        why = "one query per frame" if query_mode != "none" else "the bound without queries"
        raise ValueError(f"frames must be from 1 to {upper} for this model ({why}), got {frames}")
    return frames
