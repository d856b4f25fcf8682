"""The prefix-cached log-probs the in-process judge and surprisal use equal a full forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neuron2graph.explain.prefixlm import common_prefix, logprobs
from neuron2graph.testing import tiny_model


def _direct(model: torch.nn.Module, row: list[int], positions: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([row])).logits[0].float()
    return logits.log_softmax(-1)[positions]


def test_common_prefix() -> None:
    assert common_prefix([[1, 2, 3], [1, 2, 4, 5], [1, 2]]) == 2
    assert common_prefix([[1, 2], [3]]) == 0
    assert common_prefix([]) == 0


@pytest.mark.parametrize("budget", [4096, 20])  # one batch; many batches of unequal widths
def test_logprobs_equal_a_full_forward(budget: int) -> None:
    lm = tiny_model("llama", seed=3)
    shared = [5, 9, 14, 2, 7, 30, 11]
    rows = [[*shared, 3, 4], [*shared, 40, 41, 42, 43, 44, 45], [*shared, 8], [6, 6, 6, 6],
            [*shared, 12, 13, 19, 21]]
    positions = [[8], [7, 9, 12], [6, 7], [1, 3], []]
    got = logprobs(lm.model, rows, positions, token_budget=budget)
    for row, pos, out in zip(rows, positions, got, strict=True):
        if not pos:
            assert out.numel() == 0
            continue
        assert torch.allclose(out, _direct(lm.model, row, pos), atol=1e-4)
    # rows sharing a prefix: the prefix runs once, the result is unchanged
    same = [r for r in rows if r[:7] == shared]
    got = logprobs(lm.model, same, [[len(r) - 1] for r in same], token_budget=budget)
    for row, out in zip(same, got, strict=True):
        assert torch.allclose(out, _direct(lm.model, row, [len(row) - 1]), atol=1e-4)


def test_local_judge_reads_the_same_numbers_as_a_plain_forward(tmp_path: Path) -> None:
    from neuron2graph.explain.llm import LocalChat, torch_expected

    lm = tiny_model("llama", seed=1)
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    chat = LocalChat(str(tmp_path / "m"), batch_size=2)
    prompts = [[{"role": "user", "content": f"is the cat {w} here? answer"}]
               for w in ("sat", "ran away", "one two three four")]
    answers = chat.choice_logprobs(prompts)
    ids = chat.choice_ids()
    for msgs, ans in zip(prompts, answers, strict=True):
        row = chat.tokenizer.encode(chat.render(msgs), add_special_tokens=False)
        want = _direct(chat.model, row, [len(row) - 1])[0]
        for c, t in ids.items():
            assert ans.logprobs[c] == pytest.approx(float(want[t]), abs=1e-4)
    tokens = [[" the", " cat"], [" one", " two", " three"]]
    values = chat.simulate_slots(prompts[:2], tokens)
    assert [len(v) for v in values] == [2, 3]
    assert all(0.0 <= x <= 9.0 for v in values for x in v)
    # the first slot's value from a plain forward of the prompt up to it
    row = chat.tokenizer.encode(chat.render(prompts[0]), add_special_tokens=False)
    row += chat.tokenizer.encode(" the\t", add_special_tokens=False)
    direct = _direct(chat.model, row, [len(row) - 1])
    (want,) = torch_expected([direct], chat.digit_ids())
    assert values[0][0] == pytest.approx(want[0], abs=1e-4)
