"""Run under torchrun with DS_ACCELERATOR=cpu: add query tokens to a ZeRO-3 partitioned tiny Qwen2 (with
and without spare embedding rows) and check on every rank that the new rows equal the mean of the old."""

import os
import sys

import deepspeed
import torch
import torch.distributed as dist
from transformers import Qwen2ForCausalLM, Qwen2TokenizerFast
from transformers.integrations import HfDeepSpeedConfig

from llava_st.core import add_query_tokens, init_query_embeddings
from llava_st.core.tokens import embedding_rows
from llava_st.testing import tiny_qwen2_config

DS = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}, "bf16": {"enabled": False}}


def check(tokenizer_dir: str, spare_rows: int) -> None:
    tok = Qwen2TokenizerFast.from_pretrained(tokenizer_dir)
    vocab = len(tok) + spare_rows
    keep = HfDeepSpeedConfig(DS)  # what the HF Trainer sets up for --deepspeed: marks ZeRO-3 as enabled
    with deepspeed.zero.Init(config_dict_or_path=DS):
        model = Qwen2ForCausalLM(tiny_qwen2_config(vocab))
    matrices = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    assert all(w.numel() == 0 for w in matrices), "expected partitioned weights"
    with deepspeed.zero.GatheredParameters(matrices):
        expected = [w[: len(tok)].float().mean(0).clone() for w in matrices]
    query = add_query_tokens(tok, 8)
    init_query_embeddings(model, query)
    rows = embedding_rows(model)
    assert rows >= max(query.ids) + 1, rows
    matrices = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    with deepspeed.zero.GatheredParameters(matrices):
        for w, mean in zip(matrices, expected):
            got = w[list(query.ids)].float()
            assert torch.allclose(got, mean.expand_as(got), atol=1e-6), (got[:, :3], mean[:3])
            assert not torch.allclose(w[0].float(), mean), "old rows must stay as they were"
    del keep
    print(f"rank {dist.get_rank()}: spare={spare_rows} rows={rows} ok", flush=True)


if __name__ == "__main__":
    deepspeed.init_distributed(dist_backend="gloo")
    check(sys.argv[1], spare_rows=0)
    check(sys.argv[1], spare_rows=29)
    dist.barrier()
    dist.destroy_process_group()
    # Everything is checked and printed. Leave without the interpreter's teardown: under load, a thread
    # of DeepSpeed's CPU shared-memory comm op was once still running when C++ statics were destroyed,
    # and the process aborted ("terminate called without an active exception", exit -6) after both
    # ranks had printed "ok".
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
