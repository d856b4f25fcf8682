"""Prompt templates (files in `prompts/`), delphi-style highlighting and answer parsing.

Templates live in text files so they can be read and changed without touching code; they use
`string.Template` placeholders (`$examples`, `$explanation`, `$text`, `$tokens`) so braces in
text examples need no escaping. Parsers never guess: an answer they cannot read returns None, and
callers count it as unparseable (reported, never dropped silently).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from string import Template

Message = dict[str, str]

OPEN, CLOSE = "<<", ">>"


@cache
def template(name: str) -> Template:
    text = resources.files("neuron2graph.explain").joinpath("prompts", f"{name}.txt")
    return Template(text.read_text(encoding="utf-8").strip())


def messages(kind: str, **fields: str) -> list[Message]:
    """The chat messages of prompt `kind` (explain, detect, fuzz, simulate)."""
    return [
        {"role": "system", "content": template(f"{kind}_system").substitute()},
        {"role": "user", "content": template(f"{kind}_user").substitute(**fields)},
    ]


def highlight(tokens: Sequence[str], marked: Sequence[bool]) -> str:
    """Join token pieces into text, wrapping each run of marked tokens in << >> (delphi)."""
    out: list[str] = []
    inside = False
    for tok, mark in zip(tokens, marked, strict=True):
        if mark and not inside:
            out.append(OPEN)
            inside = True
        elif not mark and inside:
            out.append(CLOSE)
            inside = False
        out.append(tok)
    if inside:
        out.append(CLOSE)
    return "".join(out)


def scale10(acts: Sequence[float], a_max: float) -> list[int]:
    """Activations as integers 0-10 of the unit's max (negative values count as 0)."""
    return [max(0, min(10, round(10 * float(a) / a_max))) for a in acts]


def format_example(i: int, tokens: Sequence[str], acts: Sequence[float], a_max: float,
                   threshold: float) -> str:
    """One explainer example: highlighted text plus the marked tokens with strengths 0-10."""
    marked = [float(a) >= threshold * a_max for a in acts]
    text = highlight(tokens, marked)
    levels = scale10(acts, a_max)
    strengths = ", ".join(
        f"({tok!r}, {lvl})" for tok, lvl, m in zip(tokens, levels, marked, strict=True) if m
    )
    return f"Example {i}: {text}\nActivations: {strengths}"


EXPLANATION_RE = re.compile(r"\[EXPLANATION\]\s*:?\s*(.+)", re.IGNORECASE)


def parse_explanation(answer: str) -> str | None:
    """The text after the last `[EXPLANATION]:` (first non-empty line of it), else None."""
    hits = EXPLANATION_RE.findall(answer or "")
    for hit in reversed(hits):
        line = hit.strip().splitlines()[0].strip() if hit.strip() else ""
        line = line.lstrip(":").strip()  # "[EXPLANATION]:" with nothing after it
        line = line.strip(" *")
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
            line = line[1:-1].strip()
        if line:
            return line
    return None


def parse_binary(answer: str) -> int | None:
    """The first 0 or 1 standing alone in the answer (also `yes`/`no`), else None."""
    match = re.search(r"(?<![\d.])([01])(?!\d|\.\d)|\b(yes|no)\b", answer or "", re.IGNORECASE)
    if match is None:
        return None
    if match.group(1) is not None:
        return int(match.group(1))
    return 1 if match.group(2).lower() == "yes" else 0


def tokens_block(tokens: Sequence[str]) -> str:
    return "\n".join(repr(t)[1:-1] for t in tokens)


def parse_simulation(answer: str, n_tokens: int) -> list[float] | None:
    """Per-token predictions 0-10 from `token<TAB>value` lines, in order, else None.

    The model must give exactly one readable value per token; lines without a number are skipped,
    and a count that does not match `n_tokens` makes the answer unparseable.
    """
    values: list[float] = []
    for line in (answer or "").splitlines():
        match = re.search(r"(-?\d+(?:\.\d+)?)\s*$", line.strip())
        if match and line.strip():
            values.append(max(0.0, min(10.0, float(match.group(1)))))
    if len(values) != n_tokens:
        return None
    return values


__all__ = ["Message", "format_example", "highlight", "messages", "parse_binary",
           "parse_explanation", "parse_simulation", "scale10", "template", "tokens_block"]
