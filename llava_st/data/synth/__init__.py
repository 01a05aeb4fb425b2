"""STVG data synthesis (paper §3.2.1): Analyzer, Annotator, Refiner, Filter, each a resumable stage."""

from .analyzer import Analyzer, LocalChat, OpenAIChat, parse_objects
from .filter import Filter
from .pipeline import run_pipeline
from .refiner import Refiner
from .stage import Dropped, StageReport, run_stage

__all__ = [
    "Analyzer",
    "LocalChat",
    "OpenAIChat",
    "parse_objects",
    "Filter",
    "run_pipeline",
    "Refiner",
    "Dropped",
    "StageReport",
    "run_stage",
    "Annotator",
]


def __getattr__(name):
    # The Annotator imports transformers' GroundingDINO; load it only when asked for.
    if name == "Annotator":
        from .annotator import Annotator

        return Annotator
    raise AttributeError(name)
