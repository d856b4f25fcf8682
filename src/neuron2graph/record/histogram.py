"""Fixed activation-histogram bins that work for any scale, computed from float bits.

Bins are symmetric and logarithmic: each octave of |x| (a power of two) is split into
`SUB_BINS` = 8 equal-width sub-bins, over |x| in [2^-20, 2^12); values with |x| < 2^-20 fall
in two centre bins, (-2^-20, 0] and (0, 2^-20), and two overflow bins catch |x| >= 2^12. That is
516 bins and a relative bin width of 6-12 %, the same for a neuron whose activations are around
0.01 and one around 100. Because 0 is an edge, the count of positive activations (the density)
is read off the histogram: no separate pass over the data. (Positive subnormals below 2^-129 share
the float code of +0.0 and count as 0.)

Why from the bits: the sign, the 8 exponent bits and the top 3 mantissa bits of a float32 (bits
31..20) *are* exactly that bin, so the bin of every activation is one integer shift and one
table look-up (no log, no search), and the edges are exact binary fractions, so the bin of a
value is never ambiguous. The recorder histograms every recorded token of every neuron with
this, which is the most expensive statistic it keeps; see docs/record.md.
"""

from __future__ import annotations

import numpy as np

SUB_BINS = 8
E_LO = -20
"""Smallest magnitude edge is 2^E_LO."""
E_HI = 12
"""Largest finite magnitude edge is 2^E_HI."""
N_MAG = (E_HI - E_LO) * SUB_BINS
"""Magnitude bins per sign (256)."""
CENTRE = N_MAG + 1
"""The bin (-2^E_LO, 0]; CENTRE + 1 is (0, 2^E_LO), the first bin of positive values."""
N_BINS = 2 * N_MAG + 4
"""Negative overflow, N_MAG negative bins, two centre bins, N_MAG positive bins, overflow (516)."""
FIRST_POSITIVE = CENTRE + 1
SHIFT = 20
"""float32 bits 31..20: sign, 8 exponent bits, 3 mantissa bits (2^3 = SUB_BINS)."""


def magnitude_edges() -> np.ndarray:
    """The N_MAG + 1 magnitude edges 2^E_LO .. 2^E_HI (exact binary fractions)."""
    k = np.arange(N_MAG + 1)
    octave = E_LO + k // SUB_BINS
    frac = 1.0 + (k % SUB_BINS) / SUB_BINS
    return np.ldexp(frac, octave).astype(np.float64)


def bin_edges() -> np.ndarray:
    """All N_BINS + 1 edges, ascending, with -inf and +inf at the ends.

    Positive bins hold x in [lo, hi) (the first one: (0, 2^E_LO)); negative bins hold x in
    (lo, hi] (mirror images: |x| in [|hi|, |lo|)), the last one being (-2^E_LO, 0].
    """
    mag = magnitude_edges()
    return np.concatenate([[-np.inf], -mag[::-1], [0.0], mag, [np.inf]])


def code_table() -> np.ndarray:
    """Map `(float32 bits >> SHIFT)` (a signed 12-bit code, used modulo 4096) to a bin index."""
    codes = np.arange(4096)
    signed = np.where(codes >= 2048, codes - 4096, codes)  # arithmetic shift keeps the sign
    magnitude_code = signed & 0x7FF  # exponent (8 bits) * 8 + top 3 mantissa bits
    lo_code = (E_LO + 127) * SUB_BINS
    mag = np.clip(magnitude_code - lo_code, -1, N_MAG)  # -1: below 2^E_LO; N_MAG: overflow
    negative = signed < 0
    zero = codes == 0  # +0.0 (and positive subnormals below 2^-129)
    centre = np.where(negative | zero, CENTRE, CENTRE + 1)
    table = np.where(mag < 0, centre, np.where(negative, CENTRE - 1 - mag, CENTRE + 2 + mag))
    return table.astype(np.int64)


def bin_index(values: np.ndarray) -> np.ndarray:
    """Reference (numpy) bin of each float32 value; the recorder does the same in torch."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.int32) >> SHIFT
    return code_table()[bits & 0xFFF]


def firing_rate(
    hist: np.ndarray, max_act: np.ndarray, n_tokens: int, ratio: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of tokens with activation >= ratio * max, from the histogram, and its error bound.

    Bins wholly above the threshold are counted exactly; the one bin that contains the threshold
    contributes the part of its width above the threshold (linear interpolation). The true rate
    lies within +/- `err` (that bin's count / n_tokens) of the estimate. Neurons whose max is <= 0
    never fire: rate 0, error 0.
    """
    edges = bin_edges()
    n = hist.shape[0]
    rate = np.zeros(n, dtype=np.float64)
    err = np.zeros(n, dtype=np.float64)
    if n_tokens <= 0:
        return rate.astype(np.float32), err.astype(np.float32)
    for i in range(n):
        m = float(max_act[i])
        if not m > 0:
            continue
        thr = ratio * m
        b = int(np.searchsorted(edges, thr, side="right")) - 1  # bin holding thr
        above = float(hist[i, b + 1 :].sum())
        lo, hi = edges[b], edges[b + 1]
        share = (hi - thr) / (hi - lo) if np.isfinite(hi) and np.isfinite(lo) and hi > lo else 1.0
        rate[i] = (above + share * float(hist[i, b])) / n_tokens
        err[i] = float(hist[i, b]) / n_tokens
    return rate.astype(np.float32), err.astype(np.float32)
