#!/usr/bin/env bash
# `make demo`: the main job on the embedded default model and corpus, offline.
set -euo pipefail
RUN=${1:-runs/demo}
N2G=.venv/bin/n2g
$N2G record --model smollm2-135m --corpus default --layers 0-3 --max-tokens 100000 --out "$RUN"
for n in 0:0 1:1 2:2; do $N2G examples "$RUN" --neuron "$n" --top 3; done
