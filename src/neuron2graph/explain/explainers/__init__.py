"""Explainers behind one interface (`base.Explainer`): graph, tokens, local and openai."""

from neuron2graph.explain.explainers.base import Explainer, Explanation, UnitInput
from neuron2graph.explain.explainers.graph import GraphExplainer, TokensExplainer
from neuron2graph.explain.explainers.llm import LLMExplainer

EXPLAINERS = ("graph", "tokens", "local", "openai")

__all__ = ["EXPLAINERS", "Explainer", "Explanation", "GraphExplainer", "LLMExplainer",
           "TokensExplainer", "UnitInput"]
