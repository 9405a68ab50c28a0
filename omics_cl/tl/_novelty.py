"""Where the novelty score is cut: a share of the query (``rate_threshold``) or Otsu's split (``otsu_threshold``)."""
from __future__ import annotations

import numpy as np

NOVELTY_RATE = 0.1  # share of the query flagged novel by default


def otsu_threshold(scores: np.ndarray, bins: int = 256) -> float:
    """Label-free split of a score distribution: the cut maximising between-class variance (Otsu);
    where the maximum is a plateau (an empty gap between modes), its middle.

    Parameters
    ----------
    scores
        Scores, one per cell.
    bins
        Histogram bins.

    Returns
    -------
    float
        The threshold.
    """
    hist, edges = np.histogram(scores, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    first = int(np.argmax(between))
    last = first
    while last + 1 < len(between) and between[last + 1] >= between[first] * (1 - 1e-9):
        last += 1
    return float((edges[first + 1] + edges[last + 1]) / 2)


def rate_threshold(scores: np.ndarray, rate: float) -> float:
    """The score above which at most ``rate`` of the cells lie: the (k+1)-th largest score, k = floor(rate x cells).
    Flagging the scores above it flags at most k cells (fewer where scores tie at the threshold); with no unseen
    type in the query every flag is a false alarm, so ``rate`` is the false-alarm rate a user accepts.

    Parameters
    ----------
    scores
        Scores, one per cell (higher: more novel).
    rate
        Largest share of cells to flag, in [0, 1).

    Returns
    -------
    float
        The threshold.
    """
    if rate is None:
        raise ValueError("novelty_rate must be a share in [0, 1) for a rate threshold, got None")
    check_novelty_rate(rate)
    ordered = np.sort(np.asarray(scores, dtype=float))
    if ordered.size == 0:
        raise ValueError("no scores to threshold")
    flagged = int(np.floor(rate * ordered.size + 1e-9))
    return float(ordered[ordered.size - flagged - 1])


def check_novelty_rate(rate: float | None) -> None:
    """``ValueError`` unless ``rate`` is ``None`` (the Otsu rule) or a share in [0, 1)."""
    if rate is not None and not (isinstance(rate, (int, float)) and 0 <= rate < 1):
        raise ValueError(f"novelty_rate must be a share in [0, 1) or None (the Otsu rule), got {rate!r}")
