"""Recipes: how the project's own checkpoints are built and trained.

tiny_model: tiny offline LLaVA-OneVision models (tokenizer from Qwen's BPE ranks, Qwen2, SigLIP), also
    what the tests and benchmarks build;
synthetic_stg: the demo checkpoint's from-scratch curriculum on the synthetic STG benchmark, and the
    short training `llava-st demo` shows.
base_model: the base model (checkpoints/llava-st-base, `make base`): the same tiny LLaVA-OneVision pretrained
    on the synthetic domain with text-only captions and questions, no queries and no decoder, and its
    held-out QA evaluation.
"""
