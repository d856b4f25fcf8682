"""The typer application and the conventions every command follows.

- Commands are registered with `@command()`, which turns an `N2GError` into one line on stderr
  (`error: ...`) and exit status 2 — never a traceback for a user mistake.
- Every command that prints results takes `--json` and then prints exactly one JSON document on
  stdout (`emit_json`).
- Heavy libraries (torch, transformers) are imported inside command bodies, so `n2g --help`
  starts instantly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import typer

from neuron2graph.errors import N2GError

app = typer.Typer(
    name="n2g",
    help="neuron2graph: explain transformer neurons as graphs you can read, run and score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Hub name, local folder, .gguf file or alias smollm2-135m."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (a GPU when present), cpu or cuda.")]
DtypeOpt = Annotated[
    str, typer.Option(help="auto (fp32 on CPU, bf16 on GPU), fp32, fp16 or bf16.")
]
ExecutorOpt = Annotated[
    str, typer.Option("--executor", help="local (serial, this process) or ray (docs/scale.md).")
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster: auto (this machine's), ray://HOST:PORT, or "
                 "omit to start a local one."),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Ray actors, one model replica each (default 2).")
]
CpusOpt = Annotated[
    float, typer.Option("--cpus-per-worker", help="CPUs per Ray actor (fractional allowed).")
]
GpusOpt = Annotated[
    float, typer.Option("--gpus-per-worker", help="GPUs per Ray actor (fractional allowed).")
]


def executor_from_options(name: str, address: str | None, workers: int | None, cpus: float,
                          gpus: float) -> Any:
    """The executor the --executor/--address/--workers/--cpus-/--gpus-per-worker options ask
    for (stages.executor.make_executor is the one place that chooses)."""
    from neuron2graph.stages.executor import make_executor

    return make_executor(name, workers=workers, address=address, cpus_per_worker=cpus,
                         gpus_per_worker=gpus)


@contextlib.contextmanager
def open_executor(name: str, address: str | None, workers: int | None, cpus: float,
                  gpus: float) -> Iterator[Any]:
    """`executor_from_options` for one command, closed (Ray shut down) however it ends."""
    from neuron2graph.stages.executor import close_executor

    executor = executor_from_options(name, address, workers, cpus, gpus)
    try:
        yield executor
    finally:
        close_executor(executor)


def wrap_errors(fn: F) -> F:
    """Turn `N2GError` into `error: <one line>` on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except N2GError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: work written so far is kept; re-run to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """Register a command whose user errors print as one line and exit with status 2."""

    def decorate(fn: F) -> F:
        app.command(*args, **kwargs)(wrap_errors(fn))
        return fn

    return decorate


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def version_callback(value: bool) -> None:
    if value:
        from neuron2graph import __version__

        typer.echo(f"neuron2graph {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """neuron2graph: explain transformer neurons as graphs you can read, run and score."""
