"""The stage contract: every stage is `run(config, run_dir) -> result` over one shared loop.

Named `stages` (not `run`) so that it never reads like the store's `Run` (store/run.py) or a
stage's `run()` function. See docs/architecture.md. Importing this package never imports torch.

- `stage.py`: `WorkItem`, `Stage`, `run_stage` (plan on the driver, process on workers, finish);
- `executor.py`: `Executor`, `LocalExecutor` (serial);
- `manifest.py`: RUN/stages/<name>.json, the one resume record of every stage;
- `config.py`: which config fields change results, their hash, a readable diff;
- `reindex.py`: the SQLite index derived from the files (`n2g reindex`).
"""

from neuron2graph.stages.config import config_hash, result_fields, runtime, scope
from neuron2graph.stages.executor import Executor, LocalExecutor
from neuron2graph.stages.manifest import ConfigChanged, StageManifest, read_manifest
from neuron2graph.stages.stage import (
    ItemResult,
    Stage,
    StageOutcome,
    Worker,
    WorkerSpec,
    WorkItem,
    run_stage,
)

__all__ = [
    "ConfigChanged",
    "Executor",
    "ItemResult",
    "LocalExecutor",
    "Stage",
    "StageManifest",
    "StageOutcome",
    "WorkItem",
    "Worker",
    "WorkerSpec",
    "config_hash",
    "read_manifest",
    "result_fields",
    "run_stage",
    "runtime",
    "scope",
]
