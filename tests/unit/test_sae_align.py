"""Alignment recovers a known permutation; export round-trips through the SAELens loader."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from neuron2graph.cli import app
from neuron2graph.sae import HookPoint, Sae, SaeInfo, load_saes, random_like
from neuron2graph.sae.align import align
from neuron2graph.sae.export import save_saelens


def _sae(seed: int, n: int = 40, d: int = 16, arch: str = "topk") -> Sae:
    g = torch.Generator().manual_seed(seed)
    info = SaeInfo(d_in=d, d_sae=n, d_out=d, architecture=arch,  # type: ignore[arg-type]
                   reads=HookPoint(2, "resid_post"), writes=HookPoint(2, "resid_post"),
                   k=5 if arch == "topk" else None, path=f"s{seed}")
    thr = torch.rand(n, generator=g) if arch == "jumprelu" else None
    return Sae(info, torch.randn(d, n, generator=g), torch.randn(n, generator=g),
               torch.randn(n, d, generator=g), torch.randn(d, generator=g), threshold=thr)


def test_align_recovers_a_permutation_with_noise() -> None:
    a = _sae(0)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    b_dec = a.W_dec[perm] * 3 + 0.3 * torch.randn(40, 16)  # scaled and noisy copies
    b = Sae(a.info, a.W_enc[:, perm], a.b_enc[perm], b_dec, a.b_dec)
    result = align(a, b)
    found = {p["a"]: p["b"] for p in result["pairs"]}
    inverse = {int(j): i for i, j in enumerate(perm.tolist())}
    assert found == inverse
    assert result["summary"]["mean_cosine"] > 0.9
    control = align(a, random_like(a, seed=5))
    assert control["summary"]["mean_cosine"] < 0.6


def test_export_roundtrip_and_cli(tmp_path: Path) -> None:
    for arch in ("topk", "jumprelu", "relu"):
        sae = _sae(2, arch=arch)
        save_saelens(sae, tmp_path / arch)
        [back] = load_saes(tmp_path / arch)
        x = torch.randn(6, 16)
        torch.testing.assert_close(back.encode(x), sae.encode(x))
        assert back.info.reads == sae.info.reads and back.info.architecture == arch
    runner = CliRunner()
    res = runner.invoke(app, ["random-sae", str(tmp_path / "topk"), "--out",
                              str(tmp_path / "rnd"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["written"] == [str(tmp_path / "rnd")]
    res = runner.invoke(app, ["align", str(tmp_path / "topk"), str(tmp_path / "rnd"), "--out",
                              str(tmp_path / "m.json"), "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "matched 40 pairs" in res.output and (tmp_path / "m.json").is_file()
    res = runner.invoke(app, ["align", str(tmp_path / "topk"), str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no SAE folder" in res.output
