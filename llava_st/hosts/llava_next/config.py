"""`LlavaSTQwenConfig`: upstream's `LlavaQwenConfig` plus the SpaceVLLM options (core.STConfig, stored as
flat `st_*` attributes so they survive `config.json`) and the ids of the query tokens."""

from typing import Optional, Sequence

from llava.model.language_model.llava_qwen import LlavaQwenConfig

from ...core.config import STConfig, check_query_token_ids

NEWLINE_POSITIONS = ("grid", "frame", "one_token", "no_token")


class LlavaSTQwenConfig(LlavaQwenConfig):
    """Config of `LlavaSTQwenForCausalLM`.

    st_num_queries .. st_lambda_giou: the options of core.STConfig (see there), validated here; a bad
        value raises ValueError naming it.
    st_query_token_ids: the token ids of <r_0> ... <r_N> (N = st_num_queries), set when the tokens are
        added to the tokenizer (loading.add_st_tokens); None until then.
    """

    model_type = "llava_st_qwen"

    def __init__(self, st_query_token_ids: Optional[Sequence[int]] = None, **kwargs):
        st = STConfig.pop_from(kwargs)  # st_num_queries .. st_lambda_giou, validated
        st_query_token_ids = check_query_token_ids(st_query_token_ids, st.num_queries)
        newline = kwargs.get("mm_newline_position", "grid")
        if newline not in NEWLINE_POSITIONS:
            raise ValueError(f"mm_newline_position must be one of {NEWLINE_POSITIONS}, got {newline!r}")
        if kwargs.get("add_faster_video", False) and st.query_mode != "none":
            raise ValueError("add_faster_video=True is not supported with queries (st_query_mode must be 'none')")
        for key, value in st.to_dict().items():
            setattr(self, key, value)
        self.st_query_token_ids = st_query_token_ids
        super().__init__(**kwargs)

    @property
    def st(self) -> STConfig:
        """The SpaceVLLM options as a core.STConfig."""
        return STConfig.from_object(self)

    @classmethod
    def from_upstream(cls, config) -> "LlavaSTQwenConfig":
        """This config class for any upstream LlavaQwenConfig (e.g. the one upstream's get_model reads from
        a plain LLaVA-Video checkpoint); st_* attributes it carries are kept, missing ones get defaults."""
        if isinstance(config, cls):
            return config
        values = config.to_dict()
        values.pop("model_type", None)
        converted = cls.from_dict(values)
        converted._attn_implementation_internal = getattr(config, "_attn_implementation_internal", None)
        return converted
