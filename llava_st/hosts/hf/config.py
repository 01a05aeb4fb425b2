"""Config of the transformers host: LlavaOnevisionConfig plus the SpaceVLLM options (core.STConfig) as
flat `st_*` attributes, and the ids of the query tokens <r_0> ... <r_N>."""

from transformers import LlavaOnevisionConfig

from ...core.config import STConfig

MODEL_TYPE = "llava_st_onevision"


class LlavaSTOnevisionConfig(LlavaOnevisionConfig):
    """LlavaOnevisionConfig + `st_*` options (see core.config.STConfig for their meaning).

    st_query_token_ids: the token ids of <r_0> ... <r_{st_num_queries}> (N_v + 1 ids, the last one is the
        terminal image query), or None before the tokens were added (a config being built).
    Video features must be a square grid the model pools 2x2; vision_feature_select_strategy must be
    "full" (SigLIP has no CLS token to drop).
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        st_num_queries: int = 64,
        st_query_mode: str = "interleave",
        st_dual_cross_attention: bool = True,
        st_decoder_residual: bool = False,
        st_decoder_projections: bool = False,
        st_head_layers: int = 3,
        st_head_hidden: int = 0,
        st_lambda_time: float = 1.0,
        st_lambda_space: float = 1.0,
        st_lambda_l1: float = 3.0,
        st_lambda_giou: float = 1.0,
        st_query_token_ids=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.st_num_queries = st_num_queries
        self.st_query_mode = st_query_mode
        self.st_dual_cross_attention = st_dual_cross_attention
        self.st_decoder_residual = st_decoder_residual
        self.st_decoder_projections = st_decoder_projections
        self.st_head_layers = st_head_layers
        self.st_head_hidden = st_head_hidden
        self.st_lambda_time = st_lambda_time
        self.st_lambda_space = st_lambda_space
        self.st_lambda_l1 = st_lambda_l1
        self.st_lambda_giou = st_lambda_giou
        self.st_query_token_ids = None if st_query_token_ids is None else [int(i) for i in st_query_token_ids]
        STConfig.from_object(self)  # validates the options, raising ValueError with the bad value
        if self.st_query_token_ids is not None and len(self.st_query_token_ids) != st_num_queries + 1:
            raise ValueError(
                f"st_query_token_ids must hold st_num_queries + 1 = {st_num_queries + 1} ids, "
                f"got {len(self.st_query_token_ids)}"
            )
        if self.vision_feature_select_strategy != "full":
            raise ValueError(
                f"vision_feature_select_strategy must be 'full' for SigLIP features, got {self.vision_feature_select_strategy!r}"
            )

    @property
    def st_config(self) -> STConfig:
        return STConfig.from_object(self)
