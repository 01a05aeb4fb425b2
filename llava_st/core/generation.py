"""Greedy generation of several answers on one shared prefix (paper §3.1.5), for both hosts.

A grounding prompt is split as prefix (system, the video or image block with its queries, the time
instruction) and one suffix per description (the instruction with the description and the assistant
header). The host runs the prefix once into a KV cache. `generate_on_prefix` then runs every suffix in
ONE batch on that cache and decodes the answers greedily in the same batch, one LLM call per step for
all descriptions together:

- the batch rows are packed side by side along the sequence after the prefix (batch dimension 1), so the
  prefix keys and values are stored and read once per step, not once per description. A 4-D attention
  mask lets each token attend to the whole prefix and to the earlier tokens of its own row only;
  position ids continue each row from the prefix (P + k), as if the row were alone;
- every row stops at its own stop token or at the budget; a finished row takes no further part;
- the cache is cropped back to the prefix at the end.

So every row computes what it would compute alone (the masked keys add exact zeros to the softmax),
up to the summation order of the attention. The boxes are the host's: it runs its decoder on the
prefix's hidden states followed by a row's `Continuation.hidden`.

The language model is seen through `CausalLM` (transformers' interface: `inputs_embeds`,
`attention_mask`, `position_ids`, `past_key_values`, last hidden states, logits); this module imports
no host. FlashAttention-2 takes no 4-D mask: with `CausalLM.masks` False the rows run one by one.
"""

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Set, Union

import torch


@dataclass
class CausalLM:
    """What generation needs of a host's language model.

    body: a transformers decoder (e.g. `Qwen2Model`) called as `body(inputs_embeds=, attention_mask=,
    position_ids=, past_key_values=, use_cache=True, return_dict=True)` -> `.last_hidden_state`;
    head: hidden [.., D] -> logits [.., V]; embed: token ids -> embeddings. masks: whether the body
    accepts a 4-D float attention mask (eager/sdpa do, FlashAttention-2 does not)."""

    body: Callable
    head: Callable
    embed: Callable
    masks: bool = True

    @classmethod
    def of(cls, body, head, embed, config=None) -> "CausalLM":
        """The adapter for a transformers `body`; `config` (the body's) tells whether 4-D masks work."""
        implementation = getattr(config if config is not None else getattr(body, "config", None), "_attn_implementation", "sdpa")
        return cls(body, head, embed, masks=implementation != "flash_attention_2")

    def run(self, embeds: torch.Tensor, cache, mask: Optional[torch.Tensor] = None,
            positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Last-layer hidden states [1, n, D] of embeds [1, n, D] after what `cache` holds (appended to it)."""
        out = self.body(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                        return_dict=True)
        return out.last_hidden_state


@dataclass
class Continuation:
    """One row's result: token_ids, the generated ids without the stop token; hidden [S, D], the
    last-layer hidden states of the row's suffix tokens (what the space decoder reads after the prefix's)."""

    token_ids: List[int]
    hidden: torch.Tensor


def stop_token_ids(tokenizer) -> Set[int]:
    """The ids a chat answer ends at: the tokenizer's eos, `<|im_end|>` and `<|endoftext|>` (those it has)."""
    ids = {tokenizer.eos_token_id}
    unknown = getattr(tokenizer, "unk_token_id", None)
    for name in ("<|im_end|>", "<|endoftext|>"):
        token = tokenizer.convert_tokens_to_ids(name)
        if token != unknown:
            ids.add(token)
    return {int(i) for i in ids if i is not None}


def _ids(suffix) -> List[int]:
    return suffix.tolist() if torch.is_tensor(suffix) else [int(i) for i in suffix]


@torch.no_grad()
def generate_on_prefix(lm: CausalLM, cache, suffixes: Sequence[Union[torch.Tensor, Sequence[int]]], max_new_tokens: int,
                       stop_ids: Union[int, Iterable[int]]) -> List[Continuation]:
    """Greedy answers of every suffix (token ids, 1-D) on the prefix held by `cache` (a transformers
    DynamicCache of batch 1), all in one batch; at most `max_new_tokens` tokens each, each row ending at
    its first token in `stop_ids`. The cache holds only the prefix again when this returns."""
    rows = [_ids(s) for s in suffixes]
    if any(not r for r in rows):
        raise ValueError("an empty suffix: every description needs at least one token after the prefix")
    stops = {int(stop_ids)} if isinstance(stop_ids, int) else {int(i) for i in stop_ids}
    if not lm.masks and len(rows) > 1:  # no 4-D masks: one row at a time (same result, no batching)
        return [generate_on_prefix(lm, cache, [r], max_new_tokens, stops)[0] for r in rows]
    prefix = cache.get_seq_length()
    try:
        return _generate(lm, cache, prefix, rows, max_new_tokens, stops)
    finally:
        cache.crop(prefix)


def _generate(lm: CausalLM, cache, prefix: int, rows: List[List[int]], max_new_tokens: int, stops: Set[int]) -> List[Continuation]:
    weight = lm.head.weight if hasattr(lm.head, "weight") else None
    device = weight.device if weight is not None else cache.key_cache[0].device
    # owner[c]: the row of cache column c after the prefix; length[r]: tokens row r has in the cache
    owner = torch.tensor([r for r, ids in enumerate(rows) for _ in ids], device=device)
    length = [len(ids) for ids in rows]
    positions = torch.tensor([prefix + k for ids in rows for k in range(len(ids))], device=device)
    ids = torch.tensor([t for r in rows for t in r], device=device)
    embeds = lm.embed(ids[None])
    hidden = lm.run(embeds, cache, _mask(owner, owner, torch.arange(len(owner), device=device), prefix, embeds.dtype, lm.masks),
                    positions[None])[0]  # [L, D]
    ends = torch.tensor(length, device=device).cumsum(0) - 1
    out = [Continuation([], h) for h in hidden.split(length)]
    if max_new_tokens <= 0:
        return out
    last = hidden[ends]  # [B, D]: each row's last token
    active = list(range(len(rows)))
    while True:
        tokens = lm.head(last).argmax(-1).tolist()
        going = []
        for r, token in zip(active, tokens):
            if token in stops:
                continue
            out[r].token_ids.append(token)
            if len(out[r].token_ids) < max_new_tokens:
                going.append(r)
        if not going:
            return out
        fed = torch.tensor([out[r].token_ids[-1] for r in going], device=device)
        step_rows = torch.tensor(going, device=device)
        step_positions = torch.tensor([prefix + length[r] for r in going], device=device)
        for r in going:
            length[r] += 1
        columns = torch.arange(len(owner), len(owner) + len(going), device=device)
        owner = torch.cat([owner, step_rows])
        embeds = lm.embed(fed[None])
        last = lm.run(embeds, cache, _mask(owner, step_rows, columns, prefix, embeds.dtype, lm.masks), step_positions[None])[0]
        active = going


def _mask(owner: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, prefix: int, dtype, masks: bool) -> Optional[torch.Tensor]:
    """The additive attention mask [1, 1, Q, prefix + C] of Q new tokens (of rows `rows`, at packed
    columns `columns`) over the prefix and the C packed columns whose rows are `owner`: a token sees the
    whole prefix and its own row's columns up to its own. None without 4-D masks (one row: plain causal)."""
    if not masks:
        return None
    allowed = (owner[None, :] == rows[:, None]) & (torch.arange(len(owner), device=owner.device)[None, :] <= columns[:, None])
    allowed = torch.cat([torch.ones(len(rows), prefix, dtype=torch.bool, device=owner.device), allowed], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=owner.device).masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]
