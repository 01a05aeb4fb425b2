"""Logging the loss terms next to `loss`, for both hosts' Trainers (transformers.Trainer subclasses).

The models return the unweighted terms of eq. 5-6 as outputs named in core.losses.LOSS_TERMS (`loss`
is their weighted sum, core.losses.combine_losses). `LossTermsLogging` sums each term a step returns and,
when the Trainer logs `loss`, logs each term's mean since the last log averaged over the ranks as
transformers averages `loss`, so that `loss` is the weighted sum of the logged terms under data
parallelism too. A term no rank saw since the last log is not logged.
"""

from collections import defaultdict

import torch

from ..core.losses import LOSS_TERMS


class LossTermsLogging:
    """Mixin for a transformers.Trainer subclass (put it first among the bases)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._terms = defaultdict(float)  # this rank's loss terms since the last log, summed
        self._term_calls = 0

    def record_loss_terms(self, outputs) -> None:
        """Add the loss terms of one step's model outputs (a ModelOutput or dict; missing or None terms skip)."""
        for name in LOSS_TERMS:
            value = outputs.get(name) if hasattr(outputs, "get") else getattr(outputs, name, None)
            if torch.is_tensor(value):
                self._terms[name] += float(value.detach().float())
        self._term_calls += 1

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
        self.record_loss_terms(outputs)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        if "loss" in logs and self._term_calls:
            # log() runs on every rank; a term a rank never saw counts 0 there, as in its `loss`.
            values = [self._terms.get(k, 0.0) / self._term_calls for k in LOSS_TERMS] + [float(k in self._terms) for k in LOSS_TERMS]
            local = torch.tensor(values, device=self.args.device, dtype=torch.float64)
            gathered = self._nested_gather(local).view(-1, 2 * len(LOSS_TERMS))
            means, seen = gathered[:, : len(LOSS_TERMS)].mean(0).tolist(), gathered[:, len(LOSS_TERMS) :].amax(0).tolist()
            logs.update({k: round(v, 6) for k, v, s in zip(LOSS_TERMS, means, seen) if s})
            self._terms.clear()
            self._term_calls = 0
        return super().log(logs, *args, **kwargs)
