"""Fits shipped in batches: the unit of work a process pool or a Dask cluster runs.

One task per series costs a round trip per series (and, on a cluster, a scheduler entry per series);
a batch of a few dozen series amortises both while leaving enough batches to keep every worker busy.
`fit_batch` is as pure as `fit_series`: the same batch gives the same fitted states, to the last bit,
wherever it runs. A series whose fit raises comes back as a `FitFailure` (the exception's type name
and message, which travel safely between processes), so one bad series never costs its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smartmetrics.engine.ensemble import FitSettings, FittedSeries, fit_series
from smartmetrics.engine.series import Series

BATCHES_PER_SLOT = 8
"""Batches per concurrent fit slot: enough that a slow batch at the end leaves little idle time."""
MAX_BATCH = 64
"""Series per batch at most: a batch's data (about 64 x 32 KB for 14 days at 5 minutes) stays small."""


@dataclass(frozen=True)
class FitFailure:
    """A series whose fit raised: what it raised, by name (counted by the caller as a failure reason)."""

    kind: str
    message: str


def fit_batch(
    batch: list[Series], settings: FitSettings, releases: list[tuple[int, ...]],
    previous: list[dict | None] | None = None,
) -> list[FittedSeries | FitFailure]:
    """Fit each series of `batch` (told its `releases` and its `previous` classification, in the same
    order); one result per series."""
    results: list[FittedSeries | FitFailure] = []
    for series, known, last in zip(batch, releases, previous or [None] * len(batch), strict=True):
        try:
            results.append(fit_series(series, settings, known, last))
        except Exception as exc:  # noqa: BLE001 - reported per series, the batch goes on
            results.append(FitFailure(type(exc).__name__, str(exc)))
    return results


def batch_size(series: int, slots: int) -> int:
    """Series per batch for `series` fits over `slots` concurrent workers: about `BATCHES_PER_SLOT`
    batches per slot, at most `MAX_BATCH` series each, at least one.

    >>> batch_size(1000, 2), batch_size(10, 2), batch_size(100_000, 16)
    (63, 1, 64)
    """
    return max(1, min(MAX_BATCH, math.ceil(series / (max(1, slots) * BATCHES_PER_SLOT))))


def batches(items: list, size: int) -> list[list]:
    """`items` in consecutive chunks of `size` (the last one shorter).

    >>> batches([1, 2, 3, 4, 5], 2)
    [[1, 2], [3, 4], [5]]
    """
    return [items[i:i + size] for i in range(0, len(items), size)]
