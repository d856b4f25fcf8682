"""Corpus sources: every file kind, folders, globs, comma lists, and every bad input's error."""

from __future__ import annotations

import json
import os
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neuron2graph.corpus import Document, describe_corpus, iter_documents
from neuron2graph.corpus import files as corpus_files
from neuron2graph.errors import N2GError


def docs(spec: str | Path) -> list[Document]:
    return list(iter_documents(str(spec)))


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, texts: list[str | None], column: str = "text") -> Path:
    pq.write_table(pa.table({column: texts, "n": list(range(len(texts)))}), path)
    return path


def test_txt_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("the cat sat\n\non the mat\n", encoding="utf-8")
    assert docs(path) == [Document(str(path), "the cat sat\n\non the mat")]


def test_txt_bom_and_crlf_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\r\n")
    assert docs(path)[0].text == "one\ntwo"


def test_large_txt_is_split_on_blank_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_files, "TXT_SPLIT_BYTES", 100)
    monkeypatch.setattr(corpus_files, "TXT_CHUNK_CHARS", 40)
    paragraphs = [f"paragraph {i} " + "word " * 8 for i in range(6)]
    path = tmp_path / "big.txt"
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    out = docs(path)
    assert [d.id for d in out] == [f"{path}#{i}" for i in range(len(out))]
    assert len(out) == 6  # each paragraph is past the 40-char target, so each ends a document
    assert [d.text for d in out] == [p.strip() for p in paragraphs]


def test_jsonl_reads_text_field_and_skips_blank_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "one", "x": 1}, {"text": "two"}])
    with path.open("a") as handle:
        handle.write("\n")
    with path.open("a") as handle:
        handle.write(json.dumps({"text": "three"}) + "\n")
    out = docs(path)
    assert [d.text for d in out] == ["one", "two", "three"]
    assert out[2].id == f"{path}#4"  # ids carry the 1-based line number


def test_jsonl_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(N2GError, match=r"a\.jsonl line 2 is not valid JSON"):
        docs(path)


@pytest.mark.parametrize("row", [{"body": "x"}, {"text": 3}, ["text"], "text"])
def test_jsonl_missing_text_names_file_and_line(tmp_path: Path, row: object) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "fine"}, row])
    with pytest.raises(N2GError, match=r'a\.jsonl line 2 has no string "text" field'):
        docs(path)


def test_parquet_reads_text_column_in_batches(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_files, "PARQUET_BATCH_ROWS", 2)
    texts: list[str | None] = ["a b", None, "c d", "   ", "e f"]
    path = write_parquet(tmp_path / "a.parquet", texts)
    out = docs(path)
    assert [d.text for d in out] == ["a b", "c d", "e f"]
    assert [d.id for d in out] == [f"{path}#0", f"{path}#2", f"{path}#4"]


def test_parquet_without_text_column(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", ["x"], column="body")
    with pytest.raises(N2GError, match=r'no "text" column \(columns: body, n\)'):
        docs(path)


def test_parquet_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(N2GError, match=r"cannot read .* as Parquet"):
        docs(path)


def test_folder_is_recursive_sorted_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b.txt").write_text("bee", encoding="utf-8")
    (tmp_path / "sub" / "a.txt").write_text("sub a", encoding="utf-8")
    (tmp_path / "a.txt").write_text("ay", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    (tmp_path / ".hidden" / "c.txt").write_text("ignored", encoding="utf-8")
    write_jsonl(tmp_path / "c.jsonl", [{"text": "see"}])
    assert [d.text for d in docs(tmp_path)] == ["ay", "bee", "see", "sub a"]


def test_glob_and_comma_list(tmp_path: Path) -> None:
    for name in ("x2.txt", "x1.txt", "y.txt"):
        (tmp_path / name).write_text(name, encoding="utf-8")
    assert [d.text for d in docs(tmp_path / "x*.txt")] == ["x1.txt", "x2.txt"]
    spec = f"{tmp_path / 'y.txt'}, {tmp_path / 'x*.txt'}"
    assert [d.text for d in docs(spec)] == ["y.txt", "x1.txt", "x2.txt"]


def test_glob_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(N2GError, match="matches nothing"):
        docs(tmp_path / "*.jsonl")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(N2GError, match="no such corpus file or folder"):
        docs(tmp_path / "nope.txt")


def test_unknown_builtin() -> None:
    with pytest.raises(N2GError, match=r"unknown corpus 'bibel'.*default, bible, stdlib"):
        docs("bibel")
    with pytest.raises(N2GError, match="unknown corpus 'wiki'"):
        docs("builtin:wiki")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(N2GError, match=r"unsupported corpus file type '\.csv'.*\.txt, \.jsonl"):
        docs(path)


def test_folder_without_corpus_files(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("x", encoding="utf-8")
    with pytest.raises(N2GError, match="holds no"):
        docs(tmp_path)


@pytest.mark.parametrize("name", ["a.txt", "a.jsonl"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("", encoding="utf-8")
    with pytest.raises(N2GError, match=r"is empty"):
        docs(path)


def test_whitespace_only_txt_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(" \n\n \n", encoding="utf-8")
    with pytest.raises(N2GError, match="is empty"):
        docs(path)


def test_empty_parquet(tmp_path: Path) -> None:
    with pytest.raises(N2GError, match="is empty"):
        docs(write_parquet(tmp_path / "a.parquet", []))


def test_non_utf8_names_file_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"first line\ncaf\xe9 au lait\n")
    with pytest.raises(N2GError) as info:
        docs(path)
    message = str(info.value)
    assert "latin.txt is not valid UTF-8" in message
    assert "byte offset 14" in message and "line 2" in message
    assert "re-encode" in message and "\n" not in message


def test_non_utf8_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(N2GError, match="byte offset 25"):
        docs(path)


def test_empty_corpus_overall(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": ""}, {"text": "  "}])
    with pytest.raises(N2GError, match="holds no text"):
        docs(path)


def test_bad_part_fails_before_any_document(tmp_path: Path) -> None:
    good = tmp_path / "a.txt"
    good.write_text("hello", encoding="utf-8")
    stream = iter_documents(f"{good},{tmp_path / 'missing.txt'}")
    with pytest.raises(N2GError, match=r"missing\.txt"):
        next(stream)


def test_txt_streams_without_reading_the_whole_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The first documents come out before a bad byte at the end of the file is ever read."""
    monkeypatch.setattr(corpus_files, "TXT_SPLIT_BYTES", 100)
    monkeypatch.setattr(corpus_files, "TXT_CHUNK_CHARS", 40)
    path = tmp_path / "big.txt"
    path.write_bytes(("word " * 20 + "\n\n").encode() * 50 + b"\xff\n")
    stream = iter_documents(str(path))
    first = list(islice(stream, 3))
    assert len(first) == 3
    with pytest.raises(N2GError, match="not valid UTF-8"):
        list(stream)


def test_jsonl_streams(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": f"doc {i}"} for i in range(5)])
    with path.open("a") as handle:
        handle.write("not json\n")
    stream = iter_documents(str(path))
    assert next(stream).text == "doc 0"
    with pytest.raises(N2GError, match="line 6"):
        list(stream)


def test_iteration_is_deterministic(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{4 - i}.txt").write_text(f"text {i}", encoding="utf-8")
    assert docs(tmp_path) == docs(tmp_path)


def test_hf_without_datasets_or_network_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(N2GError, match="needs the `datasets` package"):
        docs("hf:someone/corpus:train")


@pytest.mark.parametrize("spec", ["hf:", "hf:a::b", "hf:a:b:c:d"])
def test_hf_bad_spec(spec: str) -> None:
    with pytest.raises(N2GError, match="bad Hugging Face corpus"):
        docs(spec)


def test_describe_corpus_files(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hello", encoding="utf-8")
    os.utime(path, (1_000_000, 1_000_000))
    info = describe_corpus(f"{path},hf:org/name:validation")
    json.dumps(info)  # must be JSON-able
    assert info["kind"] == "multi"
    file_info = info["sources"][0]["files"][0]
    assert file_info["size"] == 5 and file_info["mtime"] == 1_000_000
    assert file_info["sha256"].startswith("2cf24dba")  # sha256("hello")
    assert info["sources"][1] == {"spec": "hf:org/name:validation", "kind": "hf",
                                  "name": "org/name", "config": None, "split": "validation"}


def test_describe_corpus_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("hello", encoding="utf-8")
    before = describe_corpus(str(path))
    path.write_text("hellp", encoding="utf-8")
    assert describe_corpus(str(path)) != before
