"""The improved method's frozen defaults are the ones the docs state (issue 15).

Why: the defaults were chosen on validation windows by benchmarks/quality.py and published in
docs/results.md; a silent change of `ImproveConfig` would make the published figures describe a
method that no longer exists, so the docs and the code must move together.
"""

from __future__ import annotations

from pathlib import Path

from neuron2graph.n2g.pipeline import ImproveConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"


def signature() -> str:
    imp = ImproveConfig()
    bands = ", ".join(f"({first}, {vote}, {mc})" for first, vote, mc in imp.bands)
    cal = imp.calibrate
    return (f"ImproveConfig(max_examples={imp.max_examples}, augment={imp.augment}, "
            f"calibrate=CalibrateConfig(backoff={cal.backoff}, min_count={cal.min_count}, "
            f"vote={cal.vote}), bands=({bands}))")


def test_defaults_are_the_validation_choice() -> None:
    imp = ImproveConfig()
    assert imp.bands, "the improved method ships with per-layer bands chosen on validation"
    firsts = [b[0] for b in imp.bands]
    assert firsts == sorted(firsts) and firsts[0] == 0
    for layer in (0, 5, 15, 25, 29):
        chosen = imp.for_layer(layer)
        band = [b for b in imp.bands if b[0] <= layer][-1]
        assert (chosen.vote, chosen.min_count) == (band[1], band[2])


def test_docs_state_the_defaults() -> None:
    sig = signature()
    for doc in ("n2g.md", "evaluation.md", "results.md"):
        text = (DOCS / doc).read_text(encoding="utf-8")
        assert sig in text, f"docs/{doc} must state the improved method's defaults: {sig}"


def test_improved_build_skips_augmentation_by_default() -> None:
    """The frozen improved method was measured without augmentation, so it builds without it
    even where the paper build's augmenter is on (`n2g build --method improved`, `n2g eval`)."""
    from dataclasses import replace

    from neuron2graph.n2g.pipeline import N2GConfig, _make_augmenter

    cfg = N2GConfig(augmenter="causal", improve=ImproveConfig())
    assert _make_augmenter(None, None, cfg) is None  # type: ignore[arg-type]
    paper = N2GConfig(augmenter=None, improve=replace(ImproveConfig(), augment=True))
    assert _make_augmenter(None, None, paper) is None  # type: ignore[arg-type]
