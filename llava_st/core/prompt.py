"""The prompt of both hosts, in Qwen's chat format: LLaVA-Video's `qwen_1_5` conversation template
(llava/conversation.py of LLaVA-NeXT @ df17966, system message "You are a helpful assistant.").

A grounding or QA prompt is  prefix (system turn, user header, the visual block, the time instruction
of a video)  +  suffix (the instruction or question, the assistant header)  +  answer. The prefix does
not depend on the description, so one KV cache of it serves several descriptions (core.generation).
The visual block is the host's: the LLaVA-NeXT host writes upstream's "<image>" placeholder, the
transformers host a processor segment; both pass it in as `visual`.
"""

from typing import List, Optional

SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
USER = "<|im_start|>user\n"
ASSISTANT = "<|im_start|>assistant\n"
END_TURN = "<|im_end|>"


def prefix_parts(visual, time_text: Optional[str] = None) -> List:
    """[system turn + user header, `visual`, "\\n" + time_text + "\\n"]; only "\\n" after the visual
    block without `time_text` (an image). time_text: core.timespan.time_instruction of the video."""
    return [SYSTEM + USER, visual, "\n" + (f"{time_text}\n" if time_text else "")]


def suffix_text(question: str, first_turn: bool = True) -> str:
    """The user's text and the assistant header; a later turn first opens a new user turn."""
    head = "" if first_turn else f"\n{USER}"
    return f"{head}{question}{END_TURN}\n{ASSISTANT}"


def answer_text(answer: str) -> str:
    """The assistant's answer closed by <|im_end|> (the generation's stop token)."""
    return answer + END_TURN
