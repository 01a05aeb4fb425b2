"""Instruction and answer templates per task. Training draws a template per record (varied phrasing);
inference and eval use template 0 of each task. Every template contains the description verbatim
(`{caption}`), so its tokens can be located for the space decoder.

Answers: STVG and VTG answer with the one span template (core.timespan.format_span); REC answers with
REC_ANSWER (its box comes from the decoder); in the "boxes as text" ablation STVG/REC answers carry the
boxes as text (core.boxtext).
"""

import random
from typing import Optional

TEMPLATES = {
    "stvg": [
        "Where and when does this happen in the video: \"{caption}\"? Answer with the time span.",
        "Find the tube of the target described as \"{caption}\". When does it happen?",
        "Locate \"{caption}\" in space and time. Give the start and end time.",
        "Given the description \"{caption}\", find when it occurs and track the subject.",
        "During which seconds can we see this: \"{caption}\"? Ground it in the frames.",
    ],
    "vtg": [
        "When does \"{caption}\" happen in the video? Answer with the time span.",
        "Find the start and end time of the moment: \"{caption}\".",
        "Give the time span during which \"{caption}\" takes place.",
        "At what time in the video does this happen: \"{caption}\"?",
    ],
    "rec": [
        "Locate the object described as \"{caption}\" in the image.",
        "Where is \"{caption}\"? Ground it in the image.",
        "Find the region matching \"{caption}\".",
        "Please point out \"{caption}\" in the picture.",
    ],
}

REC_ANSWER = "The object is located."


def instruction(task: str, caption: str, rng: Optional[random.Random] = None) -> str:
    """The user instruction for a grounding task; template 0 without `rng`, a random one with it."""
    if task not in TEMPLATES:
        raise ValueError(f"no instruction templates for task {task!r}; known: {sorted(TEMPLATES)}")
    choices = TEMPLATES[task]
    template = choices[0] if rng is None else rng.choice(choices)
    caption = caption.strip().rstrip(".")
    if not caption:
        raise ValueError("the description is empty")
    return template.format(caption=caption)
