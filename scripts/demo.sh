#!/usr/bin/env bash
# `make demo`: the main job on the embedded default model (SmolLM2-135M) and corpus, fully offline.
# Every step resumes or skips finished work, so running it twice is cheap.
set -euo pipefail
RUN=${1:-runs/demo}
N2G=${N2G:-.venv/bin/n2g}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
first_graph() {  # first built neuron of a layer, as L:N
  local f
  f=$(find "$RUN/graphs/$1" -name '*.json' 2>/dev/null | sort | head -n 1)
  [[ -n $f ]] && basename "$f" .json | tr _ :
}

step "1/11 record: layers 0-3 of smollm2-135m over 100k tokens of the built-in corpus"
$N2G record --model smollm2-135m --corpus default --layers 0-3 --max-tokens 100000 --out "$RUN"

step "2/11 build N2G graphs for a few random alive neurons of layers 0 and 3"
$N2G build "$RUN" --layer 0 --sample 3 --seed 0
$N2G build "$RUN" --layer 3 --sample 3 --seed 0

NEURON=$(first_graph 0)
step "3/11 the top examples of $NEURON, and what its graph predicts on one of them"
$N2G examples "$RUN" --neuron "$NEURON" --top 3
$N2G predict "$RUN" --neuron "$NEURON" --text "$($N2G examples "$RUN" --neuron "$NEURON" --top 1 --json \
  | .venv/bin/python -c 'import json,sys; e=json.load(sys.stdin)["top"][0]; print("".join(e["tokens"][int(e.get("bos", False)):]))')"

step "4/11 draw the graph of $NEURON"
$N2G show "$RUN" --neuron "$NEURON" --format svg --out "$RUN/$(tr : _ <<<"$NEURON").svg"

step "5/11 evaluate: the paper's protocol on 2 neurons per layer, with baselines"
$N2G eval "$RUN" --layers 0-3 --per-layer 2 --seed 0 --max-minutes 4 -q

step "6/11 decode every neuron of layers 0-3 through the LM head; find and clamp a 'water' neuron"
$N2G decode --model smollm2-135m --layers 0-3 --out "$RUN"
$N2G find-neurons --model smollm2-135m --token " water" --top 3
$N2G clamp --model smollm2-135m --neuron 23:1413 --value 30 --concept " water" \
  --prompt "I went to the store to buy some" --max-new-tokens 12

step "7/11 search the graphs and find relatives of $NEURON"
$N2G search "$RUN" --min-components 1 --limit 5
$N2G similar "$RUN" --neuron "$NEURON" --top 3

step "8/11 explain 2 units of layers 0 and 3 in words (from the graph and from the token lookup) and score them"
$N2G explain "$RUN" --layers 0,3 --per-layer 2 --seed 0 --explainer graph --augmenter none -q
$N2G explain "$RUN" --layers 0,3 --per-layer 2 --seed 0 --explainer tokens -q
$N2G score "$RUN" --layers 0,3 --per-layer 2 --seed 0 --judge none \
  --scorers detection,fuzz,simulation,embedding -q

step "9/11 SAE latents: train a small TopK SAE on layer 0's MLP output with sparsify, record its latents, graph two"
$N2G train-sae "$RUN" --out "$RUN-sae" --layers 0 --site mlp_out --expansion 8 --k 32 --tokens 20000
$N2G record --model smollm2-135m --units "sae:$RUN-sae" --layers 0 --max-tokens 20000 --out "$RUN-latents"
$N2G build "$RUN-latents" --layer 0 --sample 2 --seed 0
LATENT=$(basename "$(find "$RUN-latents/graphs/0" -name '*.json' | sort | head -n 1)" .json | tr _ :)
$N2G examples "$RUN-latents" --neuron "$LATENT" --top 2

step "10/11 what the run holds, stage by stage"
$N2G status "$RUN"

step "11/11 static report"
$N2G report "$RUN" --html "$RUN/report"
printf '\nStatic report: %s/report/index.html\n' "$RUN"
printf 'Browse the run: %s serve %s   (then open http://127.0.0.1:8000)\n' "$N2G" "$RUN"
