"""`local` and `openai`: an LLM reads highlighted train contexts and writes the explanation."""

from __future__ import annotations

from collections.abc import Sequence

from neuron2graph.explain.explainers.base import Explanation, UnitInput
from neuron2graph.explain.llm import ChatModel
from neuron2graph.explain.prompts import format_example, messages, parse_explanation


def explain_prompt(unit: UnitInput, *, threshold: float = 0.2, max_examples: int = 20) -> list[
        dict[str, str]]:
    ex = unit.examples
    blocks = [format_example(i + 1, c.tokens, c.acts, ex.a_max, threshold)
              for i, c in enumerate(ex.train[:max_examples])]
    return messages("explain", examples="\n\n".join(blocks))


PREFILL = "[EXPLANATION]:"
"""The answer is started with this, so a model that would ramble on (SmolLM2-135M-Instruct
continued the example text in 2 of 2 answers without it) writes the explanation line; the
in-process model honours it, an HTTP endpoint is asked for the line in the prompt only."""


class LLMExplainer:
    """Explain with any `ChatModel` (LocalChat or OpenAIChat); one prompt per unit."""

    def __init__(self, model: ChatModel, name: str, *, max_tokens: int = 120,
                 threshold: float = 0.2, max_examples: int = 20,
                 prefill: str | None = PREFILL) -> None:
        self.model = model
        self.prefill = prefill
        self.name = name
        self.max_tokens = max_tokens
        self.threshold = threshold
        self.max_examples = max_examples

    def explain(self, units: Sequence[UnitInput]) -> list[Explanation]:
        prompts = [explain_prompt(u, threshold=self.threshold, max_examples=self.max_examples)
                   for u in units]
        answers = self.model.generate(prompts, self.max_tokens, prefill=self.prefill)
        out = []
        for unit, ans in zip(units, answers, strict=True):
            name = unit.examples.unit
            if ans.error is not None:
                out.append(Explanation(name, self.name, None, status="failed", error=ans.error,
                                       model=self.model.name, extra={"down": ans.down}))
                continue
            text = parse_explanation(ans.text or "")
            out.append(Explanation(name, self.name, text,
                                   status="ok" if text else "unparseable", raw=ans.text,
                                   model=self.model.name))
        return out


__all__ = ["PREFILL", "LLMExplainer", "explain_prompt"]
