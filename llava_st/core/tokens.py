"""The query tokens <r_0> ... <r_N> (paper §3.1.2): added to a tokenizer and to a model's embeddings.

`<r_0> ... <r_{N-1}>` are the spatio-temporal aware queries of the N sampled video frames; the terminal
`<r_N>` is the spatial-aware query of an image. Works on plain models and under DeepSpeed ZeRO-3, where
the embedding weights are partitioned and must be gathered to be read or written.
"""

import contextlib
from dataclasses import dataclass
from typing import List, Sequence

import torch


def query_token_names(num_queries: int) -> List[str]:
    """["<r_0>", ..., "<r_{num_queries}>"]: num_queries video queries plus the terminal image query."""
    if num_queries < 1:
        raise ValueError(f"num_queries must be >= 1, got {num_queries}")
    return [f"<r_{i}>" for i in range(num_queries + 1)]


@dataclass(frozen=True)
class QueryTokens:
    """Token ids of the queries. `ids[i]` is <r_i>; `ids[-1]` is the terminal (image) query."""

    ids: tuple

    @property
    def num_queries(self) -> int:
        return len(self.ids) - 1

    @property
    def terminal_id(self) -> int:
        return self.ids[-1]

    def frame_ids(self, num_frames: int) -> List[int]:
        """Ids of <r_0> ... <r_{F-1}> for a video of F sampled frames (F <= num_queries)."""
        if not 1 <= num_frames <= self.num_queries:
            raise ValueError(f"a video of {num_frames} frames needs 1..{self.num_queries} queries")
        return list(self.ids[:num_frames])


def add_query_tokens(tokenizer, num_queries: int) -> QueryTokens:
    """Add <r_0> ... <r_N> as special tokens to a transformers tokenizer (idempotent); return their ids."""
    names = query_token_names(num_queries)
    missing = [n for n in names if n not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(names)
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise RuntimeError("tokenizer did not accept the query tokens")
    return QueryTokens(tuple(int(i) for i in ids))


def _gathered(params: Sequence[torch.nn.Parameter]):
    """Context that makes ZeRO-3 partitioned parameters whole (and writes rank 0's edits back)."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed  # only reached when the parameters are DeepSpeed's

        return deepspeed.zero.GatheredParameters(list(params), modifier_rank=0)
    return contextlib.nullcontext()


def embedding_rows(model) -> int:
    """Number of rows of the input embedding matrix, also under ZeRO-3."""
    weight = model.get_input_embeddings().weight
    return int(weight.ds_shape[0]) if hasattr(weight, "ds_shape") else int(weight.shape[0])


def init_query_embeddings(model, query: QueryTokens) -> None:
    """Make room for the query ids in `model`'s embeddings and set their rows to the mean of the rows
    of the original vocabulary (ids below the first query id), input and output embeddings alike.

    Resizes only when an id is beyond the matrix (Qwen2 checkpoints carry spare rows). Ids are token
    indices; rows are [D] vectors in the model's dtype.
    """
    first = min(query.ids)
    needed = max(query.ids) + 1
    if needed > embedding_rows(model):
        model.resize_token_embeddings(needed)
    ids = torch.tensor(query.ids)
    matrices = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not matrices[0]:
        matrices.append(out.weight)
    with _gathered(matrices):
        with torch.no_grad():
            for weight in matrices:
                mean = weight[:first].float().mean(dim=0)
                weight[ids.to(weight.device)] = mean.to(weight.dtype)
