"""Chat models behind one small interface: an in-process transformers model or an OpenAI endpoint.

Explainers and scorers need two things from a model: a text answer to a batch of chat prompts
(`generate`) and, for detection/fuzzing AUROC, the log-probabilities of the one-token answers
"0" and "1" (`choice_logprobs`). The in-process model also simulates a unit all at once
(`simulate_slots`), which needs prompt log-probs an HTTP endpoint cannot be trusted with. Both
backends return one `Answer` per prompt in order; a failed call is an `Answer` with `error` set,
never an exception, so callers keep what succeeded. When the endpoint cannot be reached at all,
`Answer.down` is set and callers stop with one line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from neuron2graph.errors import N2GError

Message = dict[str, str]
CHOICES = ("0", "1")


@dataclass
class Answer:
    text: str | None = None
    logprobs: dict[str, float] = field(default_factory=dict)
    """Log-probabilities of the answer choices ("0", "1") at the first answer token."""
    error: str | None = None
    down: bool = False
    """The endpoint could not be reached (connection refused, server killed)."""


class ChatModel(Protocol):
    name: str

    def generate(self, batch: Sequence[list[Message]], max_tokens: int,
                 prefill: str | None = None) -> list[Answer]: ...
    def choice_logprobs(self, batch: Sequence[list[Message]]) -> list[Answer]: ...


def plain_chat(messages: Sequence[Message]) -> str:
    """A chat rendered for a tokenizer without a chat template (tiny test models)."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def resolve_model_path(spec: str) -> str:
    from neuron2graph.models.default import DEFAULT_ALIAS, converted_default_dir

    if spec in (DEFAULT_ALIAS, "default"):
        return str(converted_default_dir())
    return str(Path(spec).expanduser()) if Path(spec).expanduser().exists() else spec


class LocalChat:
    """An in-process Hugging Face causal LM; prompts of a batch are padded and run together."""

    def __init__(self, spec: str = "smollm2-135m", *, device: str = "cpu",
                 batch_size: int = 8) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(spec)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model: Any = AutoModelForCausalLM.from_pretrained(path)
            self.model = model.to(device).eval()
        except OSError as exc:
            raise N2GError(f"cannot load the chat model {spec!r}: {str(exc).splitlines()[0]}: "
                           "pass a local folder or the alias smollm2-135m") from None
        self.name = spec
        self.device = torch.device(device)
        self.batch_size = max(1, batch_size)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.seconds = 0.0
        """Time spent inside the model (for the cost report)."""
        self._blank: list[int] | None = None

    def render(self, messages: Sequence[Message]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=False))
        return plain_chat(messages)

    def _encode(self, prompts: Sequence[str]) -> Any:
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True,
                             add_special_tokens=False)
        return {k: v.to(self.device) for k, v in enc.items()}

    def generate(self, batch: Sequence[list[Message]], max_tokens: int,
                 prefill: str | None = None) -> list[Answer]:
        """Greedy answers; with `prefill` the answer is started with that text (returned in
        front of what the model wrote), may not begin with a line break or end-of-text (a small
        model otherwise often ends the line at once), and stops at the end of its line."""
        import torch

        out: list[Answer] = []
        stop: dict[str, Any] = {}
        if prefill:
            stop = {"stop_strings": ["\n"], "tokenizer": self.tokenizer,
                    "begin_suppress_tokens": self.blank_ids()}
        for i in range(0, len(batch), self.batch_size):
            part = [self.render(m) + (prefill or "") for m in batch[i : i + self.batch_size]]
            t0 = time.perf_counter()
            enc = self._encode(part)
            limit = getattr(self.model.config, "max_position_embeddings", None)
            used = int(enc["input_ids"].shape[1])
            room = max_tokens if limit is None else min(max_tokens, int(limit) - used)
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=max(1, room), do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id, **stop)
            self.seconds += time.perf_counter() - t0
            new = gen[:, enc["input_ids"].shape[1]:]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            out += [Answer(text=(prefill or "") + t) for t in texts]
        return out

    def blank_ids(self) -> list[int]:
        """Ids of the tokens that are only whitespace with a line break, and end-of-text."""
        if self._blank is None:
            vocab = self.tokenizer.get_vocab().values()
            blank = [int(i) for i in vocab
                     if "\n" in (t := str(self.tokenizer.decode([i]))) and not t.strip()]
            if self.tokenizer.eos_token_id is not None:
                blank.append(int(self.tokenizer.eos_token_id))
            self._blank = sorted(set(blank))
        return self._blank

    def choice_ids(self) -> dict[str, int]:
        ids: dict[str, int] = {}
        for c in CHOICES:
            enc = self.tokenizer.encode(c, add_special_tokens=False)
            if enc:
                ids[c] = int(enc[0])
        return ids

    def choice_logprobs(self, batch: Sequence[list[Message]]) -> list[Answer]:
        """P("0"/"1") after each prompt, the prompts' shared prefix computed once
        (`prefixlm.logprobs`: the LM head runs at the last position only)."""
        from neuron2graph.explain.prefixlm import logprobs

        ids = self.choice_ids()
        rows = self._rows([self.render(m) for m in batch])
        t0 = time.perf_counter()
        logp = logprobs(self.model, rows, [[len(r) - 1] for r in rows], pad_id=self._pad())
        self.seconds += time.perf_counter() - t0
        out: list[Answer] = []
        for row in logp:
            lps = {c: float(row[0, t]) for c, t in ids.items()}
            best = max(lps, key=lambda c: lps[c]) if lps else None
            out.append(Answer(text=best, logprobs=lps))
        return out

    def simulate_slots(self, batch: Sequence[list[Message]],
                       tokens: Sequence[Sequence[str]]) -> list[list[float]]:
        """All-at-once simulation (OpenAI's method): the answer `token<TAB>0` lines are written
        into the prompt, and at each token's value slot the expected value of the single-digit
        answers 0-9 under the model's distribution is read; one forward per prompt instead of a
        generated line per token. Earlier slots hold the placeholder 0."""
        from neuron2graph.explain.prefixlm import logprobs
        from neuron2graph.explain.prompts import tokens_block

        digits = self.digit_ids()
        rows: list[list[int]] = []
        slots: list[list[int]] = []
        for messages, toks in zip(batch, tokens, strict=True):
            row = self._rows([self.render(messages)])[0]
            where = []
            for line in tokens_block(toks).split("\n") if toks else []:
                row += self.tokenizer.encode(line + "\t", add_special_tokens=False)
                where.append(len(row) - 1)
                row += self.tokenizer.encode("0\n", add_special_tokens=False)
            rows.append(row)
            slots.append(where)
        t0 = time.perf_counter()
        logp = logprobs(self.model, rows, slots, pad_id=self._pad())
        self.seconds += time.perf_counter() - t0
        values = torch_expected(logp, digits)
        return values

    def digit_ids(self) -> list[int]:
        """Token ids of "0".."9" (a digit the tokenizer cannot write alone is left out)."""
        ids = []
        for d in range(10):
            enc = self.tokenizer.encode(str(d), add_special_tokens=False)
            ids.append(int(enc[0]) if len(enc) == 1 else -1)
        return ids

    def _rows(self, prompts: Sequence[str]) -> list[list[int]]:
        return [list(self.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]

    def _pad(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0


def torch_expected(logp: Sequence[Any], digits: Sequence[int]) -> list[list[float]]:
    """Per row and slot: sum_d d P(d) / sum_d P(d) over the digit tokens d = 0..9."""
    import torch

    out: list[list[float]] = []
    ok = [d for d, t in enumerate(digits) if t >= 0]
    cols = torch.tensor([digits[d] for d in ok])
    weights = torch.tensor(ok, dtype=torch.float32)
    for rows in logp:
        if rows.numel() == 0:
            out.append([])
            continue
        p = rows[:, cols].softmax(-1)
        out.append([float(x) for x in p @ weights])
    return out


class OpenAIChat:
    """Any OpenAI-compatible chat endpoint, `concurrency` requests in flight at a time.

    The `openai` client retries connection errors, 429 and 5xx with exponential backoff
    (`max_retries`) and gives up after `timeout` seconds per request.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 4, timeout: float = 60.0, max_retries: int = 2) -> None:
        import os

        from openai import OpenAI

        key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = OpenAI(base_url=base_url, api_key=key, timeout=timeout,
                             max_retries=max_retries)
        self.name = model
        self.base_url = base_url or "https://api.openai.com/v1"
        self.concurrency = max(1, concurrency)
        self.seconds = 0.0

    def _call(self, messages: list[Message], max_tokens: int, logprobs: bool) -> Answer:
        import openai

        kwargs: dict[str, Any] = {"model": self.name, "messages": messages,
                                  "max_tokens": max_tokens, "temperature": 0.0}
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=10)
        try:
            resp = self.client.chat.completions.create(**kwargs)
        except openai.APIConnectionError as exc:  # includes timeouts
            return Answer(error=f"{type(exc).__name__}: {exc}", down=True)
        except openai.APIError as exc:
            return Answer(error=f"{type(exc).__name__}: {str(exc)[:200]}")
        choice = resp.choices[0]
        answer = Answer(text=choice.message.content or "")
        content = getattr(choice.logprobs, "content", None) if logprobs else None
        if content:
            for top in content[0].top_logprobs or []:
                tok = top.token.strip()
                if tok in CHOICES and tok not in answer.logprobs:
                    answer.logprobs[tok] = float(top.logprob)
        return answer

    def _map(self, batch: Sequence[list[Message]], max_tokens: int,
             logprobs: bool) -> list[Answer]:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            out = list(pool.map(lambda m: self._call(m, max_tokens, logprobs), batch))
        self.seconds += time.perf_counter() - t0
        return out

    def generate(self, batch: Sequence[list[Message]], max_tokens: int,
                 prefill: str | None = None) -> list[Answer]:
        """`prefill` is not sent: chat endpoints cannot portably continue a started answer, so
        an endpoint's answer is parsed as written (the prompt asks for the same line)."""
        return self._map(batch, max_tokens, False)

    def choice_logprobs(self, batch: Sequence[list[Message]]) -> list[Answer]:
        return self._map(batch, 1, True)


def p_one(answer: Answer) -> float | None:
    """P("1") from the two choice log-probs (renormalised); the text answer when they are
    missing; None when neither is readable."""
    from neuron2graph.explain.prompts import parse_binary

    lp = answer.logprobs
    if "1" in lp or "0" in lp:
        a = lp.get("1", -math.inf)
        b = lp.get("0", -math.inf)
        m = max(a, b)
        return math.exp(a - m) / (math.exp(a - m) + math.exp(b - m))
    if answer.text is None:
        return None
    bit = parse_binary(answer.text)
    return None if bit is None else float(bit)


__all__ = [
    "CHOICES",
    "Answer",
    "ChatModel",
    "LocalChat",
    "OpenAIChat",
    "p_one",
    "plain_chat",
    "resolve_model_path",
]
