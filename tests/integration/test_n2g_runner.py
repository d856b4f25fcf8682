"""The metered runner: KV-cached re-ranking equals whole-prompt scoring; batching; accounting."""

from __future__ import annotations

import pytest

from neuron2graph.n2g.runner import LayerRunner, _batches
from neuron2graph.testing import tiny_model


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_rerank_matches_whole_prompt_log_probability(k: int) -> None:
    lm = tiny_model("llama", n_layers=2)
    runner = LayerRunner(lm, 0, [0])
    prompt = [5, 9, 12, 30, 7, 22]
    cands = [40, 41, 42, 43]
    fast = runner.rerank(prompt, k, cands)
    full_prompts = [[*prompt[:k], c, *prompt[k + 1 :]] for c in cands]
    full = [float(t[2].sum()) for t in runner.next_tokens(full_prompts, 1)]
    offsets = [f - s for f, s in zip(full, fast, strict=True)]
    assert max(offsets) - min(offsets) == pytest.approx(0.0, abs=1e-4)
    # cost: prefix once + suffix per candidate, at full depth
    m, n = len(cands), len(prompt)
    expected = (k + m * (n - k)) * lm.n_layers + sum(len(p) for p in full_prompts) * lm.n_layers
    assert runner.meters[0].token_layers == pytest.approx(expected)


def test_batches_respect_token_budget_and_rows() -> None:
    lengths = [1, 2, 3, 4, 10, 10, 10, 50]
    groups = list(_batches(lengths, max_tokens=30, max_rows=3))
    assert [i for g in groups for i in g] == list(range(len(lengths)))
    for g in groups:
        assert len(g) <= 3
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 30


def test_shared_neurons_split_the_bill() -> None:
    lm = tiny_model("llama", n_layers=2)
    runner = LayerRunner(lm, 1, [3, 4])
    seq = [5, 9, 12]
    runner.acts([seq, seq], [0, 1])  # the same sequence for two neurons runs once
    a, b = runner.meters
    assert a.token_layers == b.token_layers == pytest.approx(3 * 2 / 2)
    with runner.shared([1.0, 3.0]):
        runner.acts([[7, 8]], [0])
    assert b.token_layers - a.token_layers == pytest.approx(2 * 2 * 0.5)


def test_mean_embedding_mask_feeds_the_mean_input_embedding() -> None:
    import torch

    lm = tiny_model("llama", n_layers=2)
    runner = LayerRunner(lm, 1, [3])
    seq = [5, 17, 12, 30]
    got = runner.acts([seq], [0], mean_at=[1])[0]
    emb = lm.model.get_input_embeddings()
    embeds = emb(torch.tensor([[5, 0, 12, 30]]))
    embeds[0, 1] = emb.weight.mean(0)
    captured: list[torch.Tensor] = []
    site = lm.sites.mlp_out(lm.layer_modules[1])
    handle = site.register_forward_pre_hook(lambda _m, a: captured.append(a[0][0, :, 3]))
    with torch.inference_mode():
        lm.model(inputs_embeds=embeds, use_cache=False)
    handle.remove()
    assert got == pytest.approx(captured[0].tolist(), abs=1e-5)
    assert got != pytest.approx(runner.acts([seq], [0])[0], abs=1e-5)
    # the same tokens with and without the mean embedding are two different forwards
    both = runner.acts([seq, seq], [0, 0], mean_at=[1, None])
    assert both[0] == pytest.approx(got, abs=1e-6)
    assert both[1] != pytest.approx(got, abs=1e-5)


def test_mean_embedding_saliency_plan_marks_positions_not_token_ids() -> None:
    from neuron2graph.n2g.saliency import MEAN_EMBEDDING, plan_saliency

    plan = plan_saliency([5, 17, 12, 30], [0.0, 1.0, 2.0, 3.0], [2], MEAN_EMBEDDING)
    assert plan.variants == [[5, 17, 12]] * 3  # tokens untouched
    assert plan.mean_at == [0, 1, 2]
    assert all(t >= 0 for v in plan.variants for t in v)
