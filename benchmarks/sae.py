"""SAE latent recording benchmark: `record --units sae:PATH` vs the bare truncated forward.

Builds a 16x TopK coder (random weights: speed and memory do not depend on the values) at the
MLP output of one layer of the default model, or uses `--sae PATH`; then, on the same windows of
the built-in corpus, measures

- tokens/s of the bare truncated forward that reads the coder's input (no encoder, no state);
- tokens/s of a full recording of every latent (encoder in the hook + top-k/sample/histogram
  state for d_sae latents), from the run's own timing;
- the throughput ratio (target >= 0.7) and the process's peak RSS.

Everything printed is measured in this run.

    python benchmarks/sae.py --layer 6 --tokens 20000
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from neuron2graph.corpus import describe_corpus, iter_documents, iter_windows
from neuron2graph.models import load_model
from neuron2graph.models.forward import pad_batch
from neuron2graph.models.hooks import capture
from neuron2graph.record import RecordConfig, record
from neuron2graph.sae import HookPoint, Sae, SaeInfo
from neuron2graph.sae.export import save_saelens
from neuron2graph.units import make_source


def random_coder(d: int, layer: int, expansion: int, k: int) -> Sae:
    n = d * expansion
    point = HookPoint(layer, "mlp_out")
    info = SaeInfo(d_in=d, d_sae=n, d_out=d, architecture="topk", reads=point, writes=point,
                   k=k, model_name="smollm2-135m")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n, d, generator=g) / d**0.5
    return Sae(info, w.T.clone(), torch.zeros(n), w, torch.zeros(d))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--sae", help="an SAE folder instead of the random 16x coder")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    lm = load_model("smollm2-135m", device="cpu", dtype="fp32")
    tmp = Path(tempfile.mkdtemp(prefix="n2g-sae-bench-"))
    try:
        path = args.sae
        if path is None:
            d = lm.model.config.hidden_size  # type: ignore[union-attr]
            path = str(save_saelens(random_coder(d, args.layer, args.expansion, args.k),
                                    tmp / "sae"))
        source = make_source(f"sae:{path}", lm)
        layer = source.layers()[0]
        sae = source.saes[layer]  # type: ignore[attr-defined]
        config = RecordConfig(window=64, top_k=20, sample=256, batch_size=args.batch_size,
                              max_tokens=args.tokens)

        def windows() -> object:
            return iter_windows(iter_documents("default"), lm.tokenizer, length=64, bos="auto")

        # Bare: the same batches, the same truncated forward, nothing done with the result.
        batch: list[list[int]] = []
        seen, bare_s = 0, 0.0
        key = (layer, sae.info.reads.site)
        for w in windows():  # type: ignore[attr-defined]
            batch.append(list(w.token_ids))
            if len(batch) == args.batch_size:
                ids, mask = pad_batch(batch, 0)
                t0 = time.perf_counter()
                capture(lm, ids, [key], attention_mask=mask)
                bare_s += time.perf_counter() - t0
                seen += int(mask.sum())
                batch = []
                if seen >= args.tokens:
                    break
        bare = seen / bare_s
        run = record(lm, windows(), [layer], tmp / "run", config, progress=False,  # type: ignore[arg-type]
                     corpus=describe_corpus("default"), source=source)
        rec = float(run.manifest["timings"]["tokens_per_s"])
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"coder          {sae.info.describe()}")
        print(f"threads        {torch.get_num_threads()}")
        print(f"bare forward   {bare:,.0f} tokens/s ({seen} tokens)")
        print(f"record latents {rec:,.0f} tokens/s ({run.manifest['tokens']} tokens, "
              f"{sae.d_sae} latents x top {config.top_k})")
        print(f"ratio          {rec / bare:.2f} (target >= 0.7)")
        print(f"peak RSS       {peak_gb:.2f} GB (target < 3 GB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
