"""A recorded run of the planted tiny Llama (n2g_planted): 1:0 fires on `cat`, 1:1 on `except`
after `all`; the corpus also holds lone `except`s, the hard negatives of 1:1.

`steerable=True` also plants what the two units *do*: 1:0 writes the "is cat" residual direction
and 1:1 the "is except" one, which the LM head reads as "next token: cat" / "next token: except"
(everything the recording sees is unchanged: the down projection acts after the neurons)."""

from __future__ import annotations

import random
from pathlib import Path

from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, planted_llama, save_planted
from typer.testing import CliRunner

from neuron2graph.cli import app
from neuron2graph.testing import WORDS


def save_steerable(root: Path) -> Path:
    """The planted model whose units also change the next-token prediction (module doc)."""
    import torch

    lm = planted_llama()
    tok = lm.tokenizer
    with torch.no_grad():
        down = lm.model.model.layers[LAYER].mlp.down_proj.weight
        head = lm.model.lm_head.weight
        for unit, dim, word in ((SINGLE, 3, C), (PAIR, 2, B)):
            down[dim, unit] = 1.0
            head[int(tok.convert_tokens_to_ids(word)), dim] = 10.0
    model_dir = root / "model"
    lm.model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    return model_dir


def record_planted(root: Path, *, steerable: bool = False) -> tuple[Path, Path]:
    """(run dir, model folder)."""
    model_dir = save_steerable(root) if steerable else save_planted(root)
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
