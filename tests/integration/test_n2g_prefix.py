"""Prefix-cached saliency variants (`n2g/prefix.py`): the same activations and graphs as whole
sequences, less model work."""

from __future__ import annotations

import pytest

from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs
from neuron2graph.n2g.prune import PruneConfig
from neuron2graph.n2g.runner import LayerRunner
from neuron2graph.n2g.saliency import DELETE, MEAN_EMBEDDING, Mask, plan_saliency
from neuron2graph.testing import tiny_model

PROMPTS = [
    [1, 5, 9, 12, 30, 7, 22, 8, 3, 14, 40, 41, 17],
    [1, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 6, 9, 10, 12, 15, 16],
    [1, 8, 3, 4],
    [1, 5, 9, 12, 30, 7, 22, 8, 3],  # a prefix of the first prompt
]


def _variants(masks: list[Mask]) -> tuple[list[list[int]], list[int | None],
                                           list[tuple[list[int], int]]]:
    seqs: list[list[int]] = []
    mean_at: list[int | None] = []
    shared: list[tuple[list[int], int]] = []
    for mask in masks:
        for ids in PROMPTS:
            rows = [len(ids) - 1, len(ids) // 2]
            plan = plan_saliency(ids, [1.0] * len(ids), rows, mask, skip_first=True)
            seqs += plan.variants
            mean_at += plan.mean_at
            shared += [(ids, k) for k in plan.masked]
    return seqs, mean_at, shared


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "opt", "qwen2", "gemma"])
@pytest.mark.parametrize("layer", [0, 1])
def test_prefixed_variants_equal_whole_sequences(family: str, layer: int) -> None:
    lm = tiny_model(family, n_layers=2)
    seqs, mean_at, shared = _variants([Mask(0), DELETE, MEAN_EMBEDDING])
    owners = [i % 2 for i in range(len(seqs))]
    whole = LayerRunner(lm, layer, [3, 7], prefix_bucket=0)
    cached = LayerRunner(lm, layer, [3, 7], prefix_bucket=2, max_batch_tokens=120, max_rows=9)
    want = whole.acts(seqs, owners, mean_at=mean_at, shared=shared)
    got = cached.acts(seqs, owners, mean_at=mean_at, shared=shared)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-5)
    # the prefixes ran once per root, so the cached runner did less model work
    spent = sum(m.token_layers for m in cached.meters)
    assert spent < 0.8 * sum(m.token_layers for m in whole.meters)
    assert all(m.padded_token_layers >= m.token_layers for m in cached.meters)


def test_bucket_bounds_the_prefix_and_bills_root_plus_suffixes() -> None:
    lm = tiny_model("llama", n_layers=2)
    ids = PROMPTS[1]  # 18 tokens
    plan = plan_saliency(ids, [1.0] * len(ids), [17], Mask(0), skip_first=True)
    runner = LayerRunner(lm, 1, [0], prefix_bucket=4, prefix_merge=0)
    runner.acts(plan.variants, [0] * len(plan.variants),
                shared=[(ids, k) for k in plan.masked])
    # k = 1..3 run whole (18 tokens); k >= 4 run 18 - 4*(k // 4) tokens on the cache of a root
    # cut to the longest prefix used (16 tokens)
    whole = 3 * 18
    suffixes = sum(18 - 4 * (k // 4) for k in range(4, 18))
    assert runner.meters[0].token_layers == pytest.approx((whole + suffixes + 16) * 2)


def test_small_groups_run_from_a_shorter_prefix() -> None:
    lm = tiny_model("llama", n_layers=2)
    ids = PROMPTS[1]  # 18 tokens
    plan = plan_saliency(ids, [1.0] * len(ids), [17], Mask(0), skip_first=True)
    shared = [(ids, k) for k in plan.masked]
    exact = LayerRunner(lm, 1, [0], prefix_merge=0)
    merged = LayerRunner(lm, 1, [0], prefix_merge=10**6)  # every group joins the first (k = 1)
    a = exact.acts(plan.variants, [0] * len(plan.variants), shared=shared)
    b = merged.acts(plan.variants, [0] * len(plan.variants), shared=shared)
    for x, y in zip(a, b, strict=True):
        assert x == pytest.approx(y, abs=1e-5)
    # variants k = 1..17 all run 17 tokens from the one-token prefix; the root is cut at 17
    assert merged.meters[0].token_layers == pytest.approx((17 * 17 + 17) * 2)
    suffixes = sum(18 - k for k in range(1, 18))
    assert exact.meters[0].token_layers == pytest.approx((suffixes + 17) * 2)


def test_wrong_root_is_refused() -> None:
    lm = tiny_model("llama", n_layers=2)
    runner = LayerRunner(lm, 0, [0], prefix_bucket=1)
    with pytest.raises(ValueError, match="share a prefix"):
        runner.acts([[1, 5, 9]], [0], shared=[([1, 6, 9], 2)])


def test_source_without_cache_runs_whole_sequences() -> None:
    from neuron2graph.testing import random_latents

    lm = tiny_model("llama", n_layers=2)
    source = random_latents(lm, n_units=16, k=4, sparse=False)
    assert not source.supports_cache
    seqs, _mean_at, shared = _variants([Mask(0)])
    a = LayerRunner(lm, 1, [2], source=source).acts(seqs, [0] * len(seqs), shared=shared)
    b = LayerRunner(lm, 1, [2], source=source, prefix_bucket=0).acts(seqs, [0] * len(seqs))
    assert a == b


@pytest.mark.parametrize("mask", ["pad", "delete", "mean_embedding"])
def test_graphs_identical_with_and_without_prefix_cache(mask: str, monkeypatch) -> None:
    from neuron2graph.n2g import runner as runner_mod
    from neuron2graph.n2g.saliency import SaliencyConfig

    lm = tiny_model("llama", n_layers=2, seed=3)
    examples = [p + p[1:6] for p in PROMPTS[:3]] + [PROMPTS[1][::-1]]
    reqs = [NeuronRequest(1, n, examples, a_max=0.05) for n in (0, 5, 9)]
    # a strict pruning threshold keeps long contexts, where variants share long prefixes
    config = N2GConfig(saliency=SaliencyConfig(mask=mask), prune=PruneConfig(threshold=0.999))

    real = runner_mod.LayerRunner.__init__

    def built(bucket: int) -> tuple[list[list[dict]], float]:

        def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            real(self, *args, **{**kwargs, "prefix_bucket": bucket})

        monkeypatch.setattr(runner_mod.LayerRunner, "__init__", init)
        results = build_graphs(lm, reqs, config)
        work = sum(r.stats.stage_token_layers.get(stage, 0.0) for r in results
                   for stage in ("saliency", "augmented"))
        return [r.graph.to_json()["root"] for r in results], work

    (cached, cached_work), (whole, whole_work) = built(2), built(0)
    assert cached == whole
    assert any(cached)  # the graphs are not empty
    assert cached_work < whole_work  # and the saliency did use the prefix cache


@pytest.mark.parametrize("point", ["resid_pre", "mlp_out", "resid_post"])
def test_sae_source_prefixed_variants_equal_whole_sequences(point: str, tmp_path) -> None:
    import torch

    from neuron2graph.sae import HookPoint, Sae, SaeInfo
    from neuron2graph.sae.export import save_saelens
    from neuron2graph.units import make_source

    lm = tiny_model("llama", n_layers=2)
    d = int(lm.model.get_input_embeddings().weight.shape[1])  # type: ignore[operator,union-attr]
    g = torch.Generator().manual_seed(1)
    where = HookPoint(1, point)  # type: ignore[arg-type]
    info = SaeInfo(d_in=d, d_sae=12, d_out=d, architecture="relu", reads=where, writes=where,
                   apply_b_dec_to_input=False)
    w = torch.randn(d, 12, generator=g)
    save_saelens(Sae(info, w, torch.zeros(12), w.T.clone(), torch.zeros(d)), tmp_path / "s")
    source = make_source(f"sae:{tmp_path / 's'}", lm)
    assert source.supports_cache
    seqs, mean_at, shared = _variants([Mask(0), MEAN_EMBEDDING])
    owners = [i % 3 for i in range(len(seqs))]
    whole = LayerRunner(lm, 1, [0, 4, 9], source=source, prefix_bucket=0)
    cached = LayerRunner(lm, 1, [0, 4, 9], source=source, prefix_bucket=1)
    want = whole.acts(seqs, owners, mean_at=mean_at, shared=shared)
    got = cached.acts(seqs, owners, mean_at=mean_at, shared=shared)
    assert any(max(w) > 0 for w in want)  # some latents fire
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert sum(m.token_layers for m in cached.meters) < sum(m.token_layers for m in whole.meters)
