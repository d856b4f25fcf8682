"""`n2g llm-serve`: a small OpenAI-compatible server for any transformers causal LM.

Why: explainers and judges speak the OpenAI API, and not every machine has vLLM; this serves any
Hugging Face model (default: the embedded SmolLM2-135M-Instruct) on 127.0.0.1 with

- `GET  /v1/models`;
- `POST /v1/chat/completions` (greedy or sampled; `logprobs` + `top_logprobs` per generated token);
- `POST /v1/completions` (`echo` returns the prompt's tokens with their log-probs, correctly
  aligned: the first token has none, token i gets log P(token i | tokens before it); with
  `logprobs` = k, the k best alternatives at every position).

Requests are served one at a time (one model, one lock); concurrent clients queue. It is also the
real server of the test suite.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

MAX_TOP = 20


class Engine:
    """One model and its tokenizer; every method holds the lock while it runs the model."""

    def __init__(self, spec: str, *, device: str = "cpu", name: str | None = None) -> None:
        from neuron2graph.explain.llm import LocalChat

        self.chat = LocalChat(spec, device=device)
        self.name = name or spec
        self.lock = threading.Lock()

    @property
    def tokenizer(self) -> Any:
        return self.chat.tokenizer

    def piece(self, tid: int) -> str:
        return str(self.tokenizer.decode([tid]))

    def _top(self, row: Any, k: int) -> list[tuple[str, float]]:
        import torch

        if k <= 0:
            return []
        vals, ids = torch.topk(row, min(k, row.shape[-1]))
        return [(self.piece(int(i)), float(v)) for v, i in zip(vals, ids, strict=True)]

    def generate(self, prompt_ids: list[int], max_tokens: int, temperature: float,
                 top_k: int) -> tuple[list[int], list[float], list[list[tuple[str, float]]], str]:
        """(new token ids, their log-probs, top alternatives per step, finish reason)."""
        import torch

        model = self.chat.model
        limit = getattr(model.config, "max_position_embeddings", None)
        room = max_tokens if limit is None else min(max_tokens, int(limit) - len(prompt_ids))
        if room <= 0:
            return [], [], [], "length"
        ids = torch.tensor([prompt_ids], device=self.chat.device)
        with self.lock, torch.no_grad():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=room,
                do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                top_p=None, top_k=None, output_logits=True, return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id)
        new = [int(t) for t in out.sequences[0, len(prompt_ids):]]
        lps: list[float] = []
        tops: list[list[tuple[str, float]]] = []
        for tid, logits in zip(new, out.logits, strict=False):
            row = torch.log_softmax(logits[0].float(), dim=-1)
            lps.append(float(row[tid]))
            tops.append(self._top(row, top_k))
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        finish = "stop" if new and new[-1] in eos_ids else "length"
        if new and new[-1] in eos_ids:
            new, lps, tops = new[:-1], lps[:-1], tops[:-1]
        return new, lps, tops, finish

    def score_prompt(self, ids: list[int], top_k: int) -> tuple[list[float | None], list[Any]]:
        """log P(token i | tokens < i) for every prompt token (None for the first)."""
        import torch

        t = torch.tensor([ids], device=self.chat.device)
        with self.lock, torch.no_grad():
            logits = self.chat.model(input_ids=t).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        lps: list[float | None] = [None]
        tops: list[Any] = [None]
        for i in range(1, len(ids)):
            lps.append(float(logp[i - 1, ids[i]]))
            tops.append(dict(self._top(logp[i - 1], top_k)))
        return lps, tops


def _logprob_entry(piece: str, lp: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    return {"token": piece, "logprob": lp, "bytes": list(piece.encode("utf-8")),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))}
                             for t, v in top]}


def create_app(engine: Engine) -> Any:
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="n2g llm-serve")

    def check_model(body: dict[str, Any]) -> None:
        if body.get("model") not in (None, engine.name):
            raise HTTPException(404, f"model {body.get('model')!r} is not served here "
                                     f"(this server has {engine.name!r})")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": engine.name, "object": "model",
                                            "created": 0, "owned_by": "neuron2graph"}]}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> dict[str, Any]:
        check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HTTPException(400, "messages must be a non-empty list")
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
        top_k = min(MAX_TOP, int(body.get("top_logprobs") or 0))
        prompt = engine.chat.render(messages)
        ids = engine.tokenizer.encode(prompt, add_special_tokens=False)
        new, lps, tops, finish = engine.generate(ids, max_tokens,
                                                 float(body.get("temperature") or 0.0), top_k)
        choice: dict[str, Any] = {
            "index": 0, "finish_reason": finish, "logprobs": None,
            "message": {"role": "assistant", "content": engine.tokenizer.decode(
                new, skip_special_tokens=True)},
        }
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [
                _logprob_entry(engine.piece(t), lp, top)
                for t, lp, top in zip(new, lps, tops, strict=True)]}
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": engine.name, "choices": [choice],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": len(new),
                          "total_tokens": len(ids) + len(new)}}

    @app.post("/v1/completions")
    def completions(body: dict[str, Any]) -> dict[str, Any]:
        check_model(body)
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise HTTPException(400, "send one prompt per request")
            prompt = prompt[0]
        raw_max = body.get("max_tokens")
        max_tokens = 16 if raw_max is None else int(raw_max)
        top_k = min(MAX_TOP, int(body.get("logprobs") or 0))
        want_lp = body.get("logprobs") is not None
        tok = engine.tokenizer
        ids = tok.encode(str(prompt), add_special_tokens=True)
        new, lps, tops, finish = engine.generate(ids, max_tokens,
                                                 float(body.get("temperature") or 0.0), top_k)
        text = tok.decode(new, skip_special_tokens=True)
        tokens = [engine.piece(t) for t in new]
        token_lps: list[float | None] = list(lps)
        top_lps: list[Any] = [dict(t) for t in tops]
        if body.get("echo"):
            p_lps, p_tops = engine.score_prompt(ids, top_k)
            text = str(prompt) + text
            tokens = [engine.piece(t) for t in ids] + tokens
            token_lps = p_lps + token_lps
            top_lps = p_tops + top_lps
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish,
                                  "logprobs": None}
        if want_lp:
            offsets, pos = [], 0
            for piece in tokens:
                offsets.append(pos)
                pos += len(piece)
            choice["logprobs"] = {"tokens": tokens, "token_logprobs": token_lps,
                                  "top_logprobs": top_lps if top_k else None,
                                  "text_offset": offsets}
        return {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion",
                "created": int(time.time()), "model": engine.name, "choices": [choice],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": len(new),
                          "total_tokens": len(ids) + len(new)}}

    return app


def serve(spec: str, *, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
          name: str | None = None) -> None:
    import uvicorn

    engine = Engine(spec, device=device, name=name)
    uvicorn.run(create_app(engine), host=host, port=port, log_level="warning")


__all__ = ["Engine", "create_app", "serve"]
