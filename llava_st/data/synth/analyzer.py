"""Analyzer (paper §3.2.1): an LLM extracts the localisable subject and objects of a caption.

The LLM is any OpenAI-compatible chat-completions endpoint (`OpenAIChat`, e.g. vLLM or an API serving
Qwen2.5-72B as in the paper) or a local transformers causal LM (`LocalChat`). It is asked for JSON
`{"subject": "...", "objects": ["...", ...]}`; `parse_objects` reads that robustly (code fences, text
around the object, single quotes are tolerated) and returns None for anything else. The record gains
`objects` (subject first, then the other objects) and `target` (the phrase the Annotator grounds:
the subject when there is one).
"""

import ast
import json
import logging
import re
import urllib.error
import urllib.request
from typing import List, Optional

from .stage import Dropped

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You extract the objects that can be localised with a bounding box in a video frame (people, animals, "
    "vehicles, items) from a video caption. Answer only with JSON: "
    '{"subject": "<the main localisable subject as a short noun phrase, or null>", '
    '"objects": ["<other localisable objects as short noun phrases>"]}.'
)
USER_PROMPT = 'Caption: "{caption}"'


class OpenAIChat:
    """Chat completions over HTTP (`POST {base_url}/chat/completions`, OpenAI's request/response JSON)."""

    def __init__(
        self, base_url: str, model: str, api_key: Optional[str] = None, timeout: float = 60.0, temperature: float = 0.0
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout, self.temperature = model, api_key, timeout, temperature

    def __call__(self, messages: List[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
        return payload["choices"][0]["message"]["content"]


class LocalChat:
    """A local transformers causal LM with a chat template, greedy decoding."""

    def __init__(self, model_path: str, device: str = "cpu", max_new_tokens: int = 128):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, use_safetensors=True).to(device).eval()
        self.device, self.max_new_tokens = device, max_new_tokens

    def __call__(self, messages: List[dict]) -> str:
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt").to(
            self.device
        )
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        return self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def _first_object(text: str) -> Optional[str]:
    """The first balanced {...} in text (braces inside strings are not special-cased: answers are short)."""
    start = text.find("{")
    if start < 0:
        return None
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    return None


def _phrase(value) -> Optional[str]:
    if isinstance(value, str) and value.strip() and value.strip().lower() not in ("null", "none", "n/a"):
        return " ".join(value.split())
    return None


def parse_objects(answer) -> Optional[List[str]]:
    """The localisable phrases of an Analyzer answer, subject first, deduplicated; [] when it names
    none; None when the answer is malformed (no JSON object with `subject` / `objects` of the right types)."""
    if not isinstance(answer, str):
        return None
    fenced = _FENCE.search(answer)
    candidate = _first_object(fenced.group(1) if fenced else answer)
    if candidate is None:
        return None
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError:
        try:
            data = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if not isinstance(data, dict) or not ({"subject", "objects"} & set(data)):
        return None
    objects = data.get("objects", [])
    if objects is None:
        objects = []
    if not isinstance(objects, list):
        return None
    phrases = [_phrase(data.get("subject"))] + [_phrase(o) for o in objects]
    result = []
    for p in phrases:
        if p and p.lower() not in (r.lower() for r in result):
            result.append(p)
    return result


class Analyzer:
    """Stage: record with `caption` -> record with `objects` and `target`.

    Drops: "analyzer request failed" (HTTP/connection error), "malformed analyzer answer",
    "no localisable object".
    """

    def __init__(self, chat):
        self.chat = chat

    def __call__(self, record: dict) -> dict:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT.format(caption=record.get("caption", ""))},
        ]
        try:
            answer = self.chat(messages)
        except (urllib.error.URLError, OSError, KeyError, IndexError, TypeError, ValueError) as e:
            logger.warning("id=%s: analyzer request failed: %s", record.get("id"), e)
            raise Dropped("analyzer request failed") from e
        objects = parse_objects(answer)
        if objects is None:
            logger.warning("id=%s: malformed analyzer answer %r", record.get("id"), str(answer)[:120])
            raise Dropped("malformed analyzer answer")
        if not objects:
            raise Dropped("no localisable object")
        return {**record, "objects": objects, "target": objects[0]}
