"""Shared helpers for the record/store integration tests: a tiny corpus and a saved tiny model."""

from __future__ import annotations

import random
from pathlib import Path

from neuron2graph.corpus import Document
from neuron2graph.testing import WORDS, tiny_model


def tiny_documents(n: int = 40, seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    return [
        Document(f"doc{i}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 160))))
        for i in range(n)
    ]


def write_corpus(path: Path, n: int = 40, seed: int = 0) -> Path:
    path.write_text("\n".join(d.text for d in tiny_documents(n, seed)) + "\n", encoding="utf-8")
    return path


def save_tiny_model(folder: Path, family: str = "llama") -> Path:
    """save_pretrained a tiny random model + tokenizer so that `--model folder` loads it."""
    lm = tiny_model(family)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder
