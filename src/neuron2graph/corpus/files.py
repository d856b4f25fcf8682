"""Documents from local files: `.txt`, `.jsonl` and `.parquet`, alone, in folders or by glob.

Every reader streams: a `.txt` file is read line by line, a `.jsonl` file record by record and a
`.parquet` file in row batches, so memory never depends on the file's size. Errors name the file
(and the line or byte) and say how to fix it.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuron2graph.corpus.base import Document, decoded_lines, empty_file_error
from neuron2graph.errors import N2GError

SUFFIXES = (".txt", ".jsonl", ".parquet")
TXT_SPLIT_BYTES = 1 << 20
"""A `.txt` file larger than this is split at blank lines into documents of ~`TXT_CHUNK_CHARS`."""
TXT_CHUNK_CHARS = 1 << 16
"""Target document size when splitting a large `.txt` file: big enough to hold many windows."""
PARQUET_BATCH_ROWS = 1024


def is_glob(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def expand_paths(spec: str) -> list[Path]:
    """Resolve one path, folder or glob spec into the sorted list of corpus files it names."""
    if is_glob(spec):
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise N2GError(f"the glob {spec!r} matches nothing: check the pattern and the folder")
        files: list[Path] = []
        for match in matches:
            path = Path(match)
            files.extend(_folder_files(path) if path.is_dir() else [path])
        files = [f for f in files if f.suffix in SUFFIXES]
        if not files:
            raise N2GError(
                f"the glob {spec!r} matches no {'/'.join(SUFFIXES)} files: point it at those"
            )
        return files
    path = Path(spec).expanduser()
    if not path.exists():
        raise N2GError(f"no such corpus file or folder {spec!r}: check the path")
    if path.is_dir():
        files = _folder_files(path)
        if not files:
            raise N2GError(
                f"folder {spec!r} holds no {', '.join(SUFFIXES)} files: add some or pick another"
            )
        return files
    if path.suffix not in SUFFIXES:
        raise N2GError(
            f"unsupported corpus file type {path.suffix or '(none)'!r} for {spec!r}: "
            f"use {', '.join(SUFFIXES)} (convert other formats to one of these)"
        )
    return [path]


def _folder_files(folder: Path) -> list[Path]:
    """Supported files under `folder`, recursively, sorted by relative path; hidden ones skipped."""
    found = [
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def iter_file(path: Path) -> Iterator[Document]:
    readers = {".txt": iter_txt, ".jsonl": iter_jsonl, ".parquet": iter_parquet}
    if path.stat().st_size == 0:
        raise empty_file_error(path)
    yield from readers[path.suffix](path)


def iter_txt(path: Path) -> Iterator[Document]:
    """One document per file; files over `TXT_SPLIT_BYTES` are cut at blank lines into `path#i`."""
    split = path.stat().st_size > TXT_SPLIT_BYTES
    parts: list[str] = []
    size = 0
    index = 0
    produced = False
    with path.open("rb") as handle:
        for _, line in decoded_lines(path, handle):
            parts.append(line)
            size += len(line)
            # Cut at a blank line once the chunk is big enough; a file with no blank lines is cut
            # at a line end when the chunk grows far past the target, so memory stays bounded.
            at_break = not line.strip() or size >= 4 * TXT_CHUNK_CHARS
            if split and size >= TXT_CHUNK_CHARS and at_break:
                text = "".join(parts).strip()
                if text:
                    yield Document(f"{path}#{index}", text)
                    index += 1
                    produced = True
                parts, size = [], 0
    text = "".join(parts).strip()
    if text:
        yield Document(f"{path}#{index}" if split else str(path), text)
    elif not produced:
        raise empty_file_error(path)


def iter_jsonl(path: Path) -> Iterator[Document]:
    """One document per line holding an object with a string `text` field; blank lines skipped."""
    produced = False
    with path.open("rb") as handle:
        for number, line in decoded_lines(path, handle):
            if not line.strip():
                continue
            try:
                record: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                raise N2GError(
                    f"{path} line {number} is not valid JSON ({exc.msg}): fix or remove that line"
                ) from None
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                fields = ", ".join(record) if isinstance(record, dict) else type(record).__name__
                raise N2GError(
                    f"{path} line {number} has no string \"text\" field "
                    f"(found: {fields or 'none'}): "
                    'each line must be an object like {"text": "..."}'
                )
            produced = True
            if text.strip():
                yield Document(f"{path}#{number}", text)
    if not produced:
        raise empty_file_error(path)


def iter_parquet(path: Path) -> Iterator[Document]:
    """One document per row of the `text` column, read in batches of `PARQUET_BATCH_ROWS`."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
        raise N2GError(
            f"cannot read {path} as Parquet ({str(exc).splitlines()[0][:120]}): "
            "check that it is a Parquet file"
        ) from None
    columns = table.schema_arrow.names
    if "text" not in columns:
        raise N2GError(
            f"{path} has no \"text\" column (columns: {', '.join(columns)}): rename the text column"
        )
    if table.metadata.num_rows == 0:
        raise empty_file_error(path)
    row = 0
    for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=["text"]):
        for value in batch.column(0).to_pylist():
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise N2GError(
                        f"{path} row {row} is not valid UTF-8 (byte offset {exc.start} in the "
                        "value): re-encode the text column as UTF-8"
                    ) from None
            if isinstance(value, str) and value.strip():
                yield Document(f"{path}#{row}", value)
            row += 1
