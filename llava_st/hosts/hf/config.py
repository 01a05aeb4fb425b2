"""Config of the transformers host: LlavaOnevisionConfig plus the SpaceVLLM options (core.STConfig) as
flat `st_*` attributes, and the ids of the query tokens <r_0> ... <r_N>."""

from transformers import LlavaOnevisionConfig

from ...core.config import STConfig, check_query_token_ids

MODEL_TYPE = "llava_st_onevision"


class LlavaSTOnevisionConfig(LlavaOnevisionConfig):
    """LlavaOnevisionConfig + `st_*` options (see core.config.STConfig for their meaning).

    st_query_token_ids: the token ids of <r_0> ... <r_{st_num_queries}> (N_v + 1 ids, the last one is the
        terminal image query), or None before the tokens were added (a config being built).
    Video features must be a square grid the model pools 2x2; vision_feature_select_strategy must be
    "full" (SigLIP has no CLS token to drop).
    """

    model_type = MODEL_TYPE

    def __init__(self, st_query_token_ids=None, **kwargs):
        st = STConfig.pop_from(kwargs)  # st_num_queries .. st_lambda_giou, validated
        super().__init__(**kwargs)
        for key, value in st.to_dict().items():
            setattr(self, key, value)
        self.st_query_token_ids = check_query_token_ids(st_query_token_ids, st.num_queries)
        if self.vision_feature_select_strategy != "full":
            raise ValueError(
                f"vision_feature_select_strategy must be 'full' for SigLIP features, got {self.vision_feature_select_strategy!r}"
            )

    @property
    def st(self) -> STConfig:
        """The SpaceVLLM options as a core.STConfig (the same name as on the LLaVA-NeXT host's config)."""
        return STConfig.from_object(self)

