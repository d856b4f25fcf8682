"""The unit every corpus source yields, and strict UTF-8 line reading shared by the file readers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from neuron2graph.errors import N2GError


@dataclass(frozen=True)
class Document:
    """One text of the corpus; `id` says where it came from (`web/Genesis/1`, `notes.txt#3`)."""

    id: str
    text: str


def decoded_lines(path: Path, handle: BinaryIO) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, text)` from a binary handle, decoding each line as strict UTF-8.

    Reading bytes line by line (instead of opening in text mode) keeps memory bounded on huge files
    and lets a decoding error name the exact byte offset in the file, which is what a user needs to
    find and fix the bad byte. A UTF-8 byte-order mark at the start is dropped; CRLF becomes LF.
    """
    offset = 0
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = offset + exc.start
            raise N2GError(
                f"{path} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte offset {bad}, "
                f"line {number}): re-encode it as UTF-8, "
                f"e.g. iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}"
            ) from None
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        if line.endswith("\r\n"):
            line = line[:-2] + "\n"
        offset += len(raw)
        yield number, line


def empty_file_error(path: Path) -> N2GError:
    return N2GError(f"{path} is empty: add text to it or leave it out of --corpus")
