"""llava_st: spatio-temporal video grounding (SpaceVLLM) for LLaVA-Video.

`import llava_st` imports no host: the upstream LLaVA-NeXT host loads only when used
(`llava_st.hosts.llava_next`), the transformers host likewise (`llava_st.hosts.hf`).
"""

__version__ = "0.1.0"
