"""The space decoder as both hosts' models hold it (a mixin placed before the transformers model class)."""

from ..core.config import STConfig
from ..core.decoder import QueryGuidedSpaceDecoder


class SpaceDecoderMixin:
    """`self.space_decoder`: the core's QueryGuidedSpaceDecoder over hidden states of size D, or None
    when the options have no decoder (query mode "none"); transformers' weight initialisation leaves the
    decoder its own (core.decoder's reset_parameters)."""

    def add_space_decoder(self, hidden_size: int, st: STConfig) -> None:
        self.space_decoder = QueryGuidedSpaceDecoder(hidden_size, st) if st.uses_decoder else None

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, QueryGuidedSpaceDecoder):  # visited after its layers: its own init wins
            module.reset_parameters()
