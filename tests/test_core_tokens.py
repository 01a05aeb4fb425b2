import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2ForCausalLM

from llava_st.core import add_query_tokens, init_query_embeddings, query_token_names
from llava_st.testing import tiny_qwen2_config


def test_names_and_ids(qwen_tokenizer):
    import copy

    tok = copy.deepcopy(qwen_tokenizer)
    assert query_token_names(2) == ["<r_0>", "<r_1>", "<r_2>"]
    q = add_query_tokens(tok, 4)
    assert q.num_queries == 4 and len(q.ids) == 5
    assert q.ids == tuple(range(4003, 4008))  # after the 4,000 ranks and the 3 chat tokens
    assert q.terminal_id == 4007 and q.frame_ids(2) == [4003, 4004]
    assert add_query_tokens(tok, 4) == q  # idempotent
    # each query is one token, also inside text, and the chat tokens upstream needs are untouched
    ids = tok("a<r_0>b <r_4>")["input_ids"]
    assert 4003 in ids and 4007 in ids
    assert tok.additional_special_tokens_ids == [4001, 4002]
    with pytest.raises(ValueError):
        q.frame_ids(5)


@pytest.mark.parametrize("spare_rows", [0, 40])
def test_embedding_rows_are_mean_initialised(qwen_tokenizer, spare_rows):
    import copy

    tok = copy.deepcopy(qwen_tokenizer)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_qwen2_config(len(tok) + spare_rows))
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    q = add_query_tokens(tok, 8)
    init_query_embeddings(model, q)
    new_in = model.get_input_embeddings().weight
    new_out = model.get_output_embeddings().weight
    assert new_in.shape[0] >= max(q.ids) + 1
    ids = list(q.ids)
    assert torch.allclose(new_in[ids], old_in[: min(ids)].mean(0).expand(9, -1), atol=1e-6)
    assert torch.allclose(new_out[ids], old_out[: min(ids)].mean(0).expand(9, -1), atol=1e-6)
    assert torch.equal(new_in[: min(ids)], old_in[: min(ids)])  # old rows untouched


@pytest.mark.slow
def test_query_embeddings_under_deepspeed_zero3(qwen_tokenizer, cache_dir):
    """Two real processes, DeepSpeed ZeRO-3 on the CPU (gloo): partitioned rows resized and initialised."""
    tok_dir = cache_dir / "tokenizer-4k"
    script = Path(__file__).parent / "scripts" / "zero3_query_embeddings.py"
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531", str(script), str(tok_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for rank in (0, 1):
        for spare in (0, 29):
            assert f"rank {rank}: spare={spare}" in out, out[-4000:]
