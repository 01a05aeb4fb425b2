"""Checks of a checkpoint directory before either host loads it, each failing with one clear line.

Weights load only from safetensors (`use_safetensors=True` everywhere): a directory with only PyTorch
pickles (`pytorch_model.bin`, `*.pt`) is refused, since unpickling runs code from the file. Before
transformers sees the weights, every safetensors file is checked against its own header (an empty,
truncated or garbage file names itself and what is wrong), and after loading, weights that do not match the
model (a checkpoint of the other host, a foreign model) are an error, never a silently random model.
"""

import json
import math
import os
import struct
from pathlib import Path
from typing import Dict, Iterable, List

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the directory or file and why."""


def read_config(path) -> dict:
    """config.json of a checkpoint directory as a dict; CheckpointError when missing, unreadable or not an object."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a model checkpoint: {'no such directory' if not path.exists() else 'not a directory'}")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{path} is not a model checkpoint: no config.json there")
    try:
        data = json.loads(cfg.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{cfg} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg} must hold a JSON object, got {type(data).__name__}")
    return data


def check_weights(path) -> List[str]:
    """The names of every tensor in the checkpoint's safetensors weights (single file or shards), each file
    checked against its header. CheckpointError for no weights, pickle-only weights, or a broken file."""
    path = Path(path)
    single, index = path / WEIGHTS, path / WEIGHTS_INDEX
    if single.exists():
        return list(safetensors_header(single))
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index (needs a 'weight_map'): {str(exc)[:200]}") from None
        names = []
        for shard in shards:
            if not isinstance(shard, str) or os.path.basename(shard) != shard:
                raise CheckpointError(f"{index}: shard {shard!r} must be a file name in the checkpoint directory")
            names += safetensors_header(path / shard)
        return names
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        raise CheckpointError(
            f"{path}: weights only as PyTorch pickles ({', '.join(pickles[:3])}); llava_st loads weights only from "
            f"safetensors ({WEIGHTS}), because unpickling runs code from the file. Convert a copy you trust: "
            "load it once and save it with save_pretrained(out, safe_serialization=True)"
        )
    raise CheckpointError(f"{path}: no weights ({WEIGHTS} or {WEIGHTS_INDEX}) in the checkpoint directory")


def safetensors_header(file) -> Dict[str, dict]:
    """The tensor entries of a safetensors file's header, after checking that the file is complete:
    8-byte header length, a JSON object header, every tensor's byte range inside the file and matching
    its dtype and shape. CheckpointError naming the file otherwise."""
    file = Path(file)
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{file}: {'empty' if size == 0 else 'truncated'} ({size} bytes): not a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length == 0 or length > MAX_HEADER or 8 + length > size:
                what = "truncated" if 0 < length <= MAX_HEADER else "not a safetensors file"
                raise CheckpointError(f"{file}: {what} ({size} bytes; its first 8 bytes announce a {length}-byte header)")
            raw = f.read(length)
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read: {exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{file}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a safetensors file (its header is not a JSON object)")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    data_size = size - 8 - length
    for name, entry in tensors.items():
        _check_entry(file, name, entry, data_size)
    return tensors


def _check_entry(file: Path, name: str, entry, data_size: int) -> None:
    try:
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        ok = isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end and all(isinstance(n, int) and n >= 0 for n in shape)
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise CheckpointError(f"{file}: not a safetensors file (tensor {name!r} has no valid dtype, shape and data_offsets)")
    if end > data_size:
        raise CheckpointError(f"{file}: truncated: tensor {name!r} ends at byte {end} of the data, which holds only {data_size}")
    if dtype in DTYPE_BYTES and (end - begin) != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise CheckpointError(f"{file}: corrupt: tensor {name!r} ({dtype} {list(shape)}) spans {end - begin} bytes")


def check_files(path, groups: Iterable[tuple]) -> None:
    """groups: (what, [alternative file sets]); CheckpointError naming the first `what` of which no
    alternative is complete in the directory."""
    path = Path(path)
    for what, alternatives in groups:
        if not any(all((path / name).is_file() for name in names) for names in alternatives):
            wanted = " or ".join(" + ".join(names) for names in alternatives)
            raise CheckpointError(f"{path}: no {what} ({wanted}) in the checkpoint directory")


TOKENIZER_FILES = ("tokenizer", [("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",)])
PREPROCESSOR_FILES = ("image preprocessor", [("preprocessor_config.json",)])


def check_loading_info(path, info: dict, ignore: Iterable[str] = ()) -> None:
    """CheckpointError when from_pretrained(..., output_loading_info=True) found weights that do not fit the
    model: missing, unexpected or mismatched keys (other than `ignore`, non-persistent buffers)."""
    ignore = tuple(ignore)
    missing = [k for k in info.get("missing_keys", []) if not (ignore and k.endswith(ignore))]
    unexpected = [k for k in info.get("unexpected_keys", []) if not (ignore and k.endswith(ignore))]
    mismatched = [k for k, *_ in info.get("mismatched_keys", [])]
    if missing or unexpected or mismatched:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {what} (e.g. {', '.join(keys[:2])})")
        raise CheckpointError(
            f"{path}: the weights do not match the model its config.json names: {'; '.join(parts)}. "
            "Is this a checkpoint of the other host, or of another model?"
        )


def short(exc: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), with its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
