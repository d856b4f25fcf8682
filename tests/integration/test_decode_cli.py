"""The four decode commands through typer's CliRunner, on tiny models saved to folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from neuron2graph.cli import app
from neuron2graph.decode import decode_layer, find_neurons
from neuron2graph.testing import tiny_model

runner = CliRunner()


def _save(
    family: str, folder: Path, *, seed: int = 0, noise: float = 0.0, n_layers: int = 2
) -> Path:
    lm = tiny_model(family, seed=seed, n_layers=n_layers)
    if noise:
        torch.manual_seed(99)
        with torch.no_grad():
            for p in lm.model.parameters():
                p.add_(noise * p.std() * torch.randn_like(p))
    model: Any = lm.model
    model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decode-models")
    return {
        "llama": _save("llama", root / "llama"),
        "perturbed": _save("llama", root / "perturbed", noise=0.02),
        "unrelated": _save("llama", root / "unrelated", seed=1),
        "gpt2": _save("gpt2", root / "gpt2"),
        "deeper": _save("llama", root / "deeper", n_layers=3),
    }


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_decode_json_matches_api(models: dict[str, Path]) -> None:
    doc = _json(["decode", "--model", str(models["llama"]), "--layers", "1", "--top", "3",
                 "--device", "cpu", "--json"])
    assert doc["neurons"] == 64 and doc["layers"] == [1]
    lm = tiny_model("llama")
    ref = decode_layer(lm, 1, top=3)
    row = doc["results"][17]
    assert (row["layer"], row["neuron"]) == (1, 17)
    assert [r["token_id"] for r in row["promote"]] == ref.kinds["promote"].ids[17].tolist()
    assert [r["token_id"] for r in row["read_gate"]] == ref.kinds["read_gate"].ids[17].tolist()


def test_decode_neurons_and_out(models: dict[str, Path], tmp_path: Path) -> None:
    doc = _json(["decode", "-m", str(models["gpt2"]), "--neurons", "0:5,1:2", "--top", "2",
                 "--chunk-size", "3", "--vocab-chunk-size", "7", "--json"])
    assert [(r["layer"], r["neuron"]) for r in doc["results"]] == [(0, 5), (1, 2)]
    assert set(doc["results"][0]) == {"layer", "neuron", "promote", "suppress", "read"}
    only = _json(["decode", "-m", str(models["gpt2"]), "--neurons", "1:2", "--kinds", "promote",
                  "--json"])
    assert set(only["results"][0]) == {"layer", "neuron", "promote"}
    bad = runner.invoke(app, ["decode", "-m", str(models["gpt2"]), "--kinds", "promote,nope"])
    assert bad.exit_code == 2 and "bad --kinds" in bad.stderr
    run = tmp_path / "run"
    doc = _json(["decode", "-m", str(models["gpt2"]), "--out", str(run), "--json"])
    assert doc["neurons"] == 128
    assert sorted(p.name for p in (run / "decode").iterdir()) == [
        "layer_000.safetensors", "layer_001.safetensors"]
    from neuron2graph.decode import decoded_tokens

    assert len(decoded_tokens(run, 1, 63)["promote"]) == 10
    again = _json(["decode", "-m", str(models["gpt2"]), "--out", str(run), "--json"])
    assert again["skipped_layers"] == [0, 1] and again["neurons"] == 0  # resumable: nothing to do
    # Another --top is refused (it used to mix layers of top 10 and top 3 silently) ...
    mixed = runner.invoke(app, ["decode", "-m", str(models["gpt2"]), "--out", str(run),
                                "--layers", "1", "--top", "3"])
    assert mixed.exit_code == 2 and "top: 10 -> 3" in mixed.stderr and "--overwrite" in mixed.stderr
    # ... unless --overwrite, which discards the earlier layers.
    redo = _json(["decode", "-m", str(models["gpt2"]), "--out", str(run), "--layers", "1",
                  "--top", "3", "--overwrite", "--json"])
    assert redo["layers"] == [1] and decoded_tokens(run, 1, 63)["promote"][-1]["rank"] == 2
    assert decoded_tokens(run, 0, 5) == {}
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["decode"]["layers"] == [1] and manifest["decode"]["top"] == 3
    table = runner.invoke(app, ["decode", "-m", str(models["gpt2"]), "--layers", "0",
                                "--show", "3"])
    assert table.exit_code == 0 and "61 more neurons" in table.output
    cmp = runner.invoke(app, ["compare-models", "-m", str(models["gpt2"]), "-m",
                              str(models["gpt2"]), "--dtype", "fp32", "--dtype", "fp16"])
    assert cmp.exit_code == 0 and "(float16)" in cmp.output  # no markup eats "[...]"-like text


def test_find_neurons_cli(models: dict[str, Path]) -> None:
    doc = _json(["find-neurons", "-m", str(models["llama"]), "--token", "dog", "--top", "5",
                 "--json"])
    lm = tiny_model("llama")
    token_id = lm.tokenizer.convert_tokens_to_ids("dog")
    assert doc["token_id"] == token_id
    want = find_neurons(lm, token_id, top=5)
    assert [(n["layer"], n["neuron"]) for n in doc["neurons"]] == [
        (h["layer"], h["neuron"]) for h in want]


def test_find_neurons_rejects_multi_token(models: dict[str, Path]) -> None:
    result = runner.invoke(app, ["find-neurons", "-m", str(models["llama"]), "--token",
                                 "dog cat"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not a single token" in errors[0] and "'cat'" in errors[0]
    assert "Traceback" not in result.stderr


def test_clamp_cli(models: dict[str, Path]) -> None:
    doc = _json(["clamp", "-m", str(models["llama"]), "--neuron", "1:3", "--value", "50",
                 "--prompt", "the dog sat on", "--max-new-tokens", "3", "--json"])
    assert len(doc["concepts"]) == 5  # default: the neuron's top-5 promoted tokens
    lm = tiny_model("llama")
    assert [c["token_id"] for c in doc["concepts"]] == (
        decode_layer(lm, 1, top=5, neurons=[3]).kinds["promote"].ids[0].tolist()
    )
    doc = _json(["clamp", "-m", str(models["llama"]), "--neuron", "1:3", "--value", "50",
                 "--prompt", "the dog", "--concept", "cat", "--concept", "mat", "--json"])
    assert [c["token"] for c in doc["concepts"]] == ["cat", "mat"]
    assert {"text_base", "text_clamped", "concept_mass_base"} <= set(doc)
    bad = runner.invoke(app, ["clamp", "-m", str(models["llama"]), "--neuron", "9:3",
                              "--value", "1", "--prompt", "the"])
    assert bad.exit_code == 2 and "out of range" in bad.stderr


def test_compare_models_cli(models: dict[str, Path], tmp_path: Path) -> None:
    png = tmp_path / "cmp.png"
    same = _json(["compare-models", "-m", str(models["llama"]), "-m", str(models["perturbed"]),
                  "--top", "3", "--out", str(png), "--json"])
    other = _json(["compare-models", "-m", str(models["llama"]), "-m", str(models["unrelated"]),
                   "--json"])
    assert png.is_file() and png.stat().st_size > 1000
    assert [x["layer"] for x in same["layers"]] == [0, 1]
    assert same["overall_top1_agree"] > 0.8  # a slightly perturbed copy keeps its tokens
    assert other["overall_top1_agree"] < 0.2  # random init: about 1/vocab by chance
    self_cmp = _json(["compare-models", "-m", str(models["llama"]), "-m", str(models["llama"]),
                      "--kind", "read", "--json"])
    assert self_cmp["overall_top1_agree"] == 1.0
    bad = runner.invoke(app, ["compare-models", "-m", str(models["llama"]), "-m",
                              str(models["deeper"])])
    assert bad.exit_code == 2 and "do not line up" in bad.stderr and "(3, 64, " in bad.stderr
    one = runner.invoke(app, ["compare-models", "-m", str(models["llama"])])
    assert one.exit_code == 2 and "exactly two" in one.stderr
