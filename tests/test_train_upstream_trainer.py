"""LlavaSTTrainer on its own: the `space_decoder` tunable part and the space decoder's learning rate."""

import pytest

pytestmark = pytest.mark.upstream


def test_space_decoder_part_and_head_learning_rate(qwen_tokenizer, tiny_siglip_repo, tmp_path):
    from llava_st.hosts.llava_next.train import LlavaSTTrainer, TrainingArguments, decoder_parameters
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, num_queries=4)
    model.requires_grad_(False)  # what upstream does for mm_tunable_parts before unfreezing its parts
    model.get_model().mm_projector.requires_grad_(True)
    model.config.mm_tunable_parts = "mm_mlp_adapter,space_decoder"
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", learning_rate=1e-3, st_head_lr=5e-2,
                             weight_decay=0.1)
    trainer = LlavaSTTrainer(model=model, args=args, tokenizer=tokenizer)

    head = decoder_parameters(model)
    assert head and all(p.requires_grad for p in head)
    assert not model.get_input_embeddings().weight.requires_grad  # the language model stays frozen
    optimizer = trainer.create_optimizer()
    head_ids = {id(p) for p in head}
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        assert not ids & head_ids or (ids <= head_ids and group["lr"] == 5e-2)
    assert sum(len(g["params"]) for g in optimizer.param_groups if g["lr"] == 5e-2) == len(head)
    trained = sum(len(g["params"]) for g in optimizer.param_groups)
    assert trained == len(head) + len(list(model.get_model().mm_projector.parameters()))
