"""A recorded run of the planted tiny Llama (n2g_planted): 1:0 fires on `cat`, 1:1 on `except`
after `all`; the corpus also holds lone `except`s, the hard negatives of 1:1."""

from __future__ import annotations

import random
from pathlib import Path

from n2g_planted import LAYER, A, B, C, save_planted
from typer.testing import CliRunner

from neuron2graph.cli import app
from neuron2graph.testing import WORDS


def record_planted(root: Path) -> tuple[Path, Path]:
    """(run dir, model folder)."""
    model_dir = save_planted(root)
    rng = random.Random(0)
    filler = [w for w in WORDS if w not in (A, B, C)]
    words: list[str] = []
    for _ in range(400):
        chunk = [rng.choice(filler) for _ in range(8)]
        roll = rng.random()
        if roll < 0.3:
            chunk[rng.randrange(8)] = C
        elif roll < 0.6:
            i = rng.randrange(4, 8)
            chunk[i], chunk[i - rng.randrange(1, 4)] = B, A
        elif roll < 0.8:
            chunk[rng.randrange(8)] = B
        words += chunk
    corpus = root / "corpus.txt"
    corpus.write_text(" ".join(words) + "\n", encoding="utf-8")
    out = root / "run"
    res = CliRunner().invoke(app, [
        "record", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
        "--layers", str(LAYER), "--window", "16", "--sample", "48", "--max-tokens", "0",
        "--no-progress", "--device", "cpu",
    ])
    assert res.exit_code == 0, res.output
    return out, model_dir


EXAMPLE_OPTS = ["--ctx-len", "8", "--n-train", "8", "--n-test", "8", "--n-negative", "8",
                "--n-hard", "6"]
