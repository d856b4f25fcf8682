"""Loading SAEs from files written in each documented layout, checked against the formula and,
for sparsify, against sparsify's own SparseCoder loaded from the same folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from neuron2graph.errors import N2GError
from neuron2graph.sae import HookPoint, load_saes, parse_tl_hook, random_like

D_IN, D_SAE = 16, 48


def write_saelens(folder: Path, *, arch: str = "standard", hook: str = "blocks.1.hook_mlp_out",
                  v6: bool = True, seed: int = 0, d_in: int = D_IN, apply_b_dec: bool = True,
                  model_name: str | None = None, extra: dict[str, Any] | None = None,
                  ) -> dict[str, Any]:
    """A SAELens-format folder with random weights, in the v6 (`meta`) or the older layout."""
    g = torch.Generator().manual_seed(seed)
    t = {"W_enc": torch.randn(d_in, D_SAE, generator=g), "b_enc": torch.randn(D_SAE, generator=g),
         "W_dec": torch.randn(D_SAE, d_in, generator=g), "b_dec": torch.randn(d_in, generator=g)}
    if arch == "jumprelu":
        t["threshold"] = torch.rand(D_SAE, generator=g)
    cfg: dict[str, Any] = {"d_in": d_in, "d_sae": D_SAE, "dtype": "float32",
                           "apply_b_dec_to_input": apply_b_dec, "normalize_activations": "none"}
    if v6:
        cfg |= {"architecture": arch, "meta": {"hook_name": hook, "model_name": model_name}}
        if arch == "topk":
            cfg["k"] = 5
    else:
        fn = "topk" if arch == "topk" else "relu"
        cfg |= {"architecture": "standard" if arch == "topk" else arch, "hook_name": hook,
                "model_name": model_name, "activation_fn_str": fn,
                "activation_fn_kwargs": {"k": 5} if arch == "topk" else {}}
    cfg |= extra or {}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(t, str(folder / "sae_weights.safetensors"))
    return t


def _expected(t: dict[str, torch.Tensor], x: torch.Tensor, arch: str, apply_b_dec: bool = True,
              ) -> torch.Tensor:
    pre = (x - t["b_dec"] if apply_b_dec else x) @ t["W_enc"] + t["b_enc"]
    if arch == "standard":
        return torch.relu(pre)
    if arch == "jumprelu":
        return torch.where(pre > t["threshold"], pre, torch.zeros_like(pre))
    acts = torch.relu(pre)
    kth = acts.topk(5, dim=-1).values[..., -1:]
    return torch.where(acts >= kth, acts, torch.zeros_like(acts))


@pytest.mark.parametrize(("arch", "v6"), [("standard", True), ("topk", True), ("jumprelu", True),
                                          ("standard", False), ("topk", False)])
def test_saelens_layouts_encode_like_the_formula(tmp_path: Path, arch: str, v6: bool) -> None:
    t = write_saelens(tmp_path / "sae", arch=arch, v6=v6)
    [sae] = load_saes(tmp_path / "sae")
    assert sae.info.reads == HookPoint(1, "mlp_out") and not sae.info.transcoder
    assert sae.info.architecture == {"standard": "relu"}.get(arch, arch)
    x = torch.randn(3, 7, D_IN)
    torch.testing.assert_close(sae.encode(x), _expected(t, x, arch))
    assert torch.allclose(sae.decode(sae.encode(x)), sae.encode(x) @ t["W_dec"] + t["b_dec"])
    if arch == "topk":
        assert int((sae.encode(x) > 0).sum(-1).max()) <= 5


def test_apply_b_dec_false_and_saelens_transcoder(tmp_path: Path) -> None:
    t = write_saelens(tmp_path / "a", apply_b_dec=False)
    [sae] = load_saes(tmp_path / "a")
    x = torch.randn(4, D_IN)
    torch.testing.assert_close(sae.encode(x), _expected(t, x, "standard", apply_b_dec=False))
    write_saelens(tmp_path / "tc", arch="transcoder", hook="blocks.0.ln2.hook_normalized",
                  extra={"hook_name_out": "blocks.0.hook_mlp_out", "d_out": D_IN})
    cfg = json.loads((tmp_path / "tc" / "cfg.json").read_text())
    cfg["meta"]["hook_name_out"] = cfg.pop("hook_name_out")
    (tmp_path / "tc" / "cfg.json").write_text(json.dumps(cfg))
    [tc] = load_saes(tmp_path / "tc")
    assert tc.info.transcoder and tc.info.reads == HookPoint(0, "mlp_in")
    assert tc.info.writes == HookPoint(0, "mlp_out") and not tc.info.apply_b_dec_to_input


def _sparsify_coder(folder: Path, *, transcode: bool, d_in: int = D_IN) -> Any:
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(1)
    coder = SparseCoder(d_in, SparseCoderConfig(num_latents=D_SAE, k=6, transcode=transcode))
    with torch.no_grad():  # non-trivial biases and decoder, as after training
        coder.encoder.bias.normal_()
        coder.b_dec.normal_()
        if coder.W_dec is not None:
            coder.W_dec.normal_()
    coder.save_to_disk(folder)
    return coder


@pytest.mark.parametrize("transcode", [False, True])
def test_sparsify_checkpoint_matches_sparsify_itself(tmp_path: Path, transcode: bool) -> None:
    from sparsify import SparseCoder

    _sparsify_coder(tmp_path / "run" / "layers.1.mlp", transcode=transcode)
    _sparsify_coder(tmp_path / "run" / "layers.0", transcode=False)
    saes = load_saes(tmp_path / "run")
    assert [s.info.layer for s in saes] == [0, 1]
    assert saes[0].info.reads == saes[0].info.writes == HookPoint(0, "resid_post")
    ours = saes[1]
    assert ours.info.transcoder == transcode
    assert ours.info.reads.site == ("mlp_in" if transcode else "mlp_out")
    theirs = SparseCoder.load_from_disk(tmp_path / "run" / "layers.1.mlp")
    x = torch.randn(20, D_IN)
    with torch.no_grad():
        top_acts, top_idx, _ = theirs.encode(x)
        dense = torch.zeros(20, D_SAE).scatter_(-1, top_idx, top_acts)
        torch.testing.assert_close(ours.encode(x), dense)
        torch.testing.assert_close(ours.decode(ours.encode(x), x), theirs(x).sae_out)


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(N2GError, match=r"unknown hook name 'blocks\.1\.hook_attn_out'"):
        write_saelens(tmp_path / "bad", hook="blocks.1.hook_attn_out")
        load_saes(tmp_path / "bad")
    with pytest.raises(N2GError, match="no SAE folder"):
        load_saes(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(N2GError, match="holds no SAE"):
        load_saes(tmp_path / "empty")
    write_saelens(tmp_path / "shape", extra={"d_sae": D_SAE + 1})
    with pytest.raises(N2GError, match="do not belong together"):
        load_saes(tmp_path / "shape")
    assert parse_tl_hook("blocks.3.mlp.hook_post") == HookPoint(3, "mlp_post")


def test_random_control_keeps_shape_and_scale(tmp_path: Path) -> None:
    write_saelens(tmp_path / "sae", arch="topk")
    [sae] = load_saes(tmp_path / "sae")
    rnd = random_like(sae, seed=3)
    assert rnd.W_enc.shape == sae.W_enc.shape and rnd.W_dec.shape == sae.W_dec.shape
    assert rnd.info.k == sae.info.k and rnd.info.reads == sae.info.reads
    assert not torch.allclose(rnd.W_dec, sae.W_dec)
    ratio = rnd.W_dec.norm(dim=-1).mean() / sae.W_dec.norm(dim=-1).mean()
    assert abs(float(ratio) - 1) < 1e-4
