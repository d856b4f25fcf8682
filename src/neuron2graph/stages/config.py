"""Stage configs: which fields change results, their hash, and a readable diff.

Every stage takes one frozen dataclass config. Its fields are of three kinds:

- *result* fields (the default): they change what the stage writes (the saliency mask, the
  augmenter, top-k). They are hashed; a run directory holding results made with other values
  refuses to resume (`ConfigChanged`) unless asked to `--overwrite`.
- *scope* fields (`scope()`): which units to process (`--neurons`, `--layer`, `--sample`). Asking
  for more or other units later is resuming, not a change, so they are not hashed.
- *runtime* fields (`runtime()`): how fast or how loud (batch sizes, device, progress bar). They
  cannot change the results beyond float rounding, so they are not hashed either.

Nested dataclasses (an `N2GConfig` inside a build config) are walked; their own `runtime()`
fields (e.g. `max_batch_tokens`) are dropped the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

KIND = "n2g_field"
"""Field-metadata key holding "scope" or "runtime" (absent: the field changes results)."""


def scope(default: Any = None, **kwargs: Any) -> Any:
    """A field that picks *which* units run (not hashed: more units later is a resume)."""
    return dataclasses.field(default=default, metadata={KIND: "scope"}, **kwargs)


def runtime(default: Any = None, **kwargs: Any) -> Any:
    """A field that changes speed or output noise only (not hashed)."""
    return dataclasses.field(default=default, metadata={KIND: "runtime"}, **kwargs)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return result_fields(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def result_fields(config: Any) -> dict[str, Any]:
    """The fields of `config` that change results, as plain JSON values (nested dicts)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.metadata.get(KIND) in ("scope", "runtime"):
            continue
        out[f.name] = _plain(getattr(config, f.name))
    return out


def config_hash(fields: dict[str, Any]) -> str:
    """A short stable hash of result fields (sorted-key JSON, sha256, 16 hex digits)."""
    text = json.dumps(fields, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as `{"a.b.c": value}` (for naming changed fields)."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`name: old -> new` for every dotted field whose value differs, sorted by name."""
    a, b = flatten(old), flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys]


__all__ = ["changed_fields", "config_hash", "flatten", "result_fields", "runtime", "scope"]
