"""Analyzer (paper §3.2.1): an LLM extracts the localisable subject and objects of a caption.

The LLM is any OpenAI-compatible chat-completions endpoint (`OpenAIChat`, e.g. vLLM or an API serving
Qwen2.5-72B as in the paper) or a local transformers causal LM (`LocalChat`). It is asked for JSON
`{"subject": "...", "objects": ["...", ...]}`; `parse_objects` reads that robustly (code fences, text
around the object, single quotes are tolerated) and returns None for anything else. The record gains
`objects` (subject first, then the other objects) and `target` (the phrase the Annotator grounds:
the subject when there is one).

Served (vLLM, SGLang, an API): `Analyzer(OpenAIChat(url, model), concurrency=16)` keeps 16 requests in
flight (the stage runner's thread pool; output in input order); each request is retried with exponential
backoff on HTTP 429/5xx, timeouts and connection errors, and a record whose last attempt fails is dropped
as "analyzer request failed" with the error in the dropped row, never stopping the run.
"""

import ast
import datetime
import email.utils
import http.client
import json
import logging
import random
import re
import time
import urllib.error
import urllib.request
from typing import Callable, List, Optional

from .stage import Dropped, need_text

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You extract the objects that can be localised with a bounding box in a video frame (people, animals, "
    "vehicles, items) from a video caption. Answer only with JSON: "
    '{"subject": "<the main localisable subject as a short noun phrase, or null>", '
    '"objects": ["<other localisable objects as short noun phrases>"]}.'
)
USER_PROMPT = 'Caption: "{caption}"'


class RequestFailed(Exception):
    """An Analyzer request that failed for good (after the last retry, or an error not worth retrying)."""


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delay seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max((when - datetime.datetime.now(datetime.timezone.utc)).total_seconds(), 0.0)


class OpenAIChat:
    """Chat completions over HTTP (`POST {base_url}/chat/completions`, OpenAI's request/response JSON).

    Thread-safe (one connection per request), so a stage can keep several requests in flight. HTTP 429
    and 5xx answers, timeouts and connection errors are retried up to `retries` times, waiting
    `backoff` * 2**attempt seconds (at most `max_backoff`, with 50-100 % jitter so that parallel requests
    spread out), or what the server's Retry-After header asks for (at most `max_retry_after`). Other
    HTTP errors (400, 401, 404, ...) and a 200 answer that is not chat-completions JSON fail at once.
    After the last attempt `RequestFailed` says what went wrong and how many attempts were made.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        temperature: float = 0.0,
        retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_retry_after: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout, self.temperature = model, api_key, timeout, temperature
        self.retries, self.backoff, self.max_backoff, self.max_retry_after = retries, backoff, max_backoff, max_retry_after
        self.sleep = sleep

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            data = response.read()
        try:
            return json.loads(data.decode("utf-8"))["choices"][0]["message"]["content"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise RequestFailed(f"malformed chat-completions response ({type(e).__name__}: {str(e)[:80]})") from e

    def __call__(self, messages: List[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature}).encode()
        for attempt in range(self.retries + 1):
            wait = None
            try:
                return self._post(body)
            except urllib.error.HTTPError as e:
                error = f"HTTP {e.code}"
                if e.code != 429 and e.code < 500:
                    raise RequestFailed(f"{error} {e.reason}".strip()) from e
                wait = retry_after_seconds(e.headers.get("Retry-After") if e.headers else None)
                if wait is not None:
                    wait = min(wait, self.max_retry_after)
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                error = "timeout" if isinstance(reason, TimeoutError) else f"connection error ({type(reason).__name__}: {reason})"
            if attempt == self.retries:
                raise RequestFailed(f"{error} after {attempt + 1} attempt(s)")
            if wait is None:
                wait = min(self.backoff * 2**attempt, self.max_backoff) * random.uniform(0.5, 1.0)
            logger.debug("%s (attempt %d): retrying in %.2f s", error, attempt + 1, wait)
            self.sleep(wait)
        raise AssertionError("unreachable")


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

    Drops: "analyzer request failed" (HTTP/connection error after the chat's retries; the dropped row's
    `detail` says which), "malformed analyzer answer", "no localisable object". `concurrency`: records
    analysed at once by the stage runner (requests in flight; for a served LLM, not for `LocalChat`).
    """

    reads = ("caption",)

    def __init__(self, chat, concurrency: int = 1):
        self.chat, self.concurrency = chat, max(int(concurrency), 1)

    def __call__(self, record: dict) -> dict:
        caption = need_text(record, "caption")  # a record without one is bad input, never a request
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT.format(caption=caption)},
        ]
        try:
            answer = self.chat(messages)
        except (RequestFailed, urllib.error.URLError, OSError, KeyError, IndexError, TypeError, ValueError) as e:
            logger.warning("id=%s: analyzer request failed: %s", record.get("id"), e)
            raise Dropped("analyzer request failed", detail=str(e)[:300]) from e
        objects = parse_objects(answer)
        if objects is None:
            logger.warning("id=%s: malformed analyzer answer %r", record.get("id"), str(answer)[:120])
            raise Dropped("malformed analyzer answer")
        if not objects:
            raise Dropped("no localisable object")
        return {**record, "objects": objects, "target": objects[0]}
