"""Turn a corpus spec into a deterministic stream of documents, and describe it for a manifest.

A spec is one or more sources joined by commas: a `.txt`/`.jsonl`/`.parquet` file, a folder, a
glob, `hf:NAME[:SPLIT]`, or a built-in (`default`, `bible`, `stdlib`). Nothing is read until the
stream is iterated, and then only as far as it is consumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuron2graph.corpus.base import Document
from neuron2graph.corpus.builtin import BUILTINS, ITERATORS, describe_builtin
from neuron2graph.corpus.files import SUFFIXES, expand_paths, is_glob, iter_file
from neuron2graph.corpus.hf import iter_hf, parse_hf
from neuron2graph.errors import N2GError

HASH_LIMIT_BYTES = 64 << 20
"""Files up to this size get a content hash in the manifest; bigger ones get size and mtime only."""


def split_spec(spec: str) -> list[str]:
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise N2GError("empty corpus spec: pass a file, folder, glob, hf:NAME or 'default'")
    return parts


def _kind(part: str) -> str:
    if part.startswith("builtin:"):
        part = part[len("builtin:"):]
        if part not in BUILTINS:
            raise _unknown_builtin(part)
        return "builtin"
    if part in BUILTINS:
        return "builtin"
    if part.startswith("hf:"):
        return "hf"
    if is_glob(part):
        return "glob"
    path = Path(part).expanduser()
    if not path.exists() and "/" not in part and not path.suffix:
        raise _unknown_builtin(part)
    return "folder" if path.is_dir() else "file"


def _unknown_builtin(name: str) -> N2GError:
    return N2GError(
        f"unknown corpus {name!r}: not a file or folder, and the built-ins are "
        f"{', '.join(BUILTINS)} (or pass a path, a glob or hf:NAME)"
    )


def _builtin_name(part: str) -> str:
    return part[len("builtin:"):] if part.startswith("builtin:") else part


def iter_documents(spec: str) -> Iterator[Document]:
    """Yield the documents of `spec` in a fixed order, reading lazily.

    Every part of the spec is validated (paths exist, globs match, names are known) before the
    first document is yielded, so a typo in the third part fails at once, not an hour into a run.
    Raises `N2GError` at the end if the whole spec produced no document.
    """
    parts = split_spec(spec)
    plan: list[tuple[str, str, list[Path]]] = []
    for part in parts:
        kind = _kind(part)
        if kind == "hf":
            parse_hf(part)
        plan.append((kind, part, expand_paths(part) if kind in ("file", "folder", "glob") else []))
    produced = False
    for kind, part, paths in plan:
        if kind == "builtin":
            docs: Iterator[Document] = ITERATORS[_builtin_name(part)]()
        elif kind == "hf":
            docs = iter_hf(part)
        else:
            docs = (doc for path in paths for doc in iter_file(path))
        for doc in docs:
            produced = True
            yield doc
    if not produced:
        raise N2GError(f"corpus {spec!r} holds no text: every document in it is empty")


def describe_corpus(spec: str) -> dict[str, Any]:
    """JSON-able description of `spec` for a run manifest: did two runs read the same text?

    Local files are listed with size and mtime, plus a SHA-256 when small enough to hash quickly;
    built-ins with the versions and hashes of their sources; Hugging Face datasets by name only.
    """
    sources: list[dict[str, Any]] = []
    for part in split_spec(spec):
        kind = _kind(part)
        if kind == "builtin":
            sources.append({"spec": part, **describe_builtin(_builtin_name(part))})
        elif kind == "hf":
            name, config, split = parse_hf(part)
            sources.append({"spec": part, "kind": "hf", "name": name, "config": config,
                            "split": split})
        else:
            files = [_describe_file(p) for p in expand_paths(part)]
            sources.append({"spec": part, "kind": kind, "files": files})
    return {"spec": spec, "kind": sources[0]["kind"] if len(sources) == 1 else "multi",
            "sources": sources}


def _describe_file(path: Path) -> dict[str, Any]:
    stat = path.stat()
    info: dict[str, Any] = {"path": str(path), "size": stat.st_size, "mtime": stat.st_mtime}
    if stat.st_size <= HASH_LIMIT_BYTES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        info["sha256"] = digest.hexdigest()
    return info


__all__ = ["SUFFIXES", "describe_corpus", "iter_documents", "split_spec"]
