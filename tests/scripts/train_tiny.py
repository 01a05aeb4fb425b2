"""`python -m llava_st.train`, plus two observations for the tests:

- each run appends the global step it starts from to <output_dir>/begin_steps.txt (0, or the step of
  the checkpoint it resumed);
- right before upstream's final save, every rank runs the trained model on a fixed batch (the records
  named by LLAVA_ST_PROBE_IDS) and rank 0 writes the batch, the outputs and the (gathered) weights of
  the space decoder and the query-token embedding rows to <output_dir>/before_save.pt.
"""

import os
import sys

import torch
from llava.train import train as upstream
from transformers import TrainerCallback

from llava_st.core.tokens import _gathered
from llava_st.hosts.llava_next import train as st_train


class RecordBeginStep(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            with open(os.path.join(args.output_dir, "begin_steps.txt"), "a") as f:
                f.write(f"{state.global_step}\n")


class ProbedTrainer(st_train.LlavaSTTrainer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_callback(RecordBeginStep())


def probe(trainer) -> dict:
    ids = os.environ.get("LLAVA_ST_PROBE_IDS", "stvg-0,rec-0").split(",")
    dataset = trainer.train_dataset
    index = {str(r.get("id")): i for i, r in enumerate(dataset.list_data_dict)}
    batch = trainer.data_collator([dataset[index[i]] for i in ids])
    model = trainer.model
    model.eval()
    with torch.no_grad():
        out = model(**trainer._prepare_inputs(dict(batch)))
    model.train()
    rows = list(model.config.st_query_token_ids)
    decoder = dict(model.space_decoder.named_parameters())
    embeddings = model.get_input_embeddings().weight
    with _gathered(list(decoder.values()) + [embeddings]):
        weights = {name: p.detach().clone() for name, p in decoder.items()}
        query_rows = embeddings[rows].detach().clone()
    return {"batch": batch, "logits": out.logits.float(), "pred_boxes": out.pred_boxes.float(), "decoder": weights,
            "query_rows": query_rows}


def with_probe(save):
    def save_with_probe(trainer, output_dir):
        observed = probe(trainer)
        if trainer.is_world_process_zero():
            torch.save(observed, os.path.join(output_dir, "before_save.pt"))
        return save(trainer=trainer, output_dir=output_dir)

    return save_with_probe


if __name__ == "__main__":
    st_train.install()
    upstream.LLaVATrainer = ProbedTrainer
    upstream.safe_save_model_for_hf_trainer = with_probe(upstream.safe_save_model_for_hf_trainer)
    st_train.run(sys.argv[1:])
