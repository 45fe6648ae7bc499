"""Forecast speed: full fits (14 days at 5 minutes, fit plus calibration, one-day horizon) per second
of wall time on a process pool, smartmetrics' default ensemble beside prophet-bands, same series.

    python -m smartmetrics.benchmarks.forecast_speed [--series 96] [--prophet-series 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from smartmetrics.engine.series import Series

DAY = 86400


def _fit_smartmetrics(series: Series) -> bool:
    """Fit one series; whether its band came out finite (a fit that raises fails the whole run)."""
    import numpy as np

    from smartmetrics.engine.ensemble import FitSettings, fit_series

    fit = fit_series(series, FitSettings(horizon=DAY))
    return bool(np.isfinite(fit.lower).all() and np.isfinite(fit.upper).all())


def _fit_prophet(series: Series) -> None:
    from smartmetrics.evaluation.peers import prophet_band_fit

    prophet_band_fit(0.8)(series, DAY)


def series_per_second(fit, corpus: list[Series], workers: int) -> tuple[float, list]:
    """Wall-clock throughput of `fit` over `corpus` on `workers` processes (pool start-up excluded),
    and what each fit returned."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_noop, range(workers)))
        start = time.perf_counter()
        results = list(pool.map(fit, corpus, chunksize=1))
        return len(corpus) / (time.perf_counter() - start), results


def _noop(_: int) -> None:
    """Warm a worker as a long-lived pool is warm: both detectors' modules imported and the models'
    first-use set-up done (statsmodels loads its STL on the first fit), so neither throughput counts
    a worker's one-time start-up (about a second, as long as fitting 30 series)."""
    from smartmetrics.evaluation.peers import quiet_prophet
    from smartmetrics.evaluation.synth import make_series

    quiet_prophet()
    _fit_smartmetrics(make_series("seasonal", days=14, seed=0).series)


def main(argv: list[str] | None = None) -> None:
    """Print series/s for each detector and the ratio."""
    from smartmetrics.evaluation.synth import make_corpus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=96)
    parser.add_argument("--prophet-series", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    corpus = [item.series for item in make_corpus(args.series) if item.series.observed > DAY // 300]
    ours, finite = series_per_second(_fit_smartmetrics, corpus, args.workers)
    if not all(finite):  # a rate over fits that gave no band measures nothing
        raise SystemExit(f"{finite.count(False)} of {len(corpus)} fits gave no finite band; no figure printed")
    print(f"{len(corpus)} synthetic series, 14 days at 5m, horizon 1d, {args.workers} worker processes")
    print(f"smartmetrics (default ensemble, no Prophet): {ours:8.1f} series/s")
    if args.prophet_series > 0:  # 0: our fit alone, e.g. for an A/B of two commits
        theirs, _ = series_per_second(_fit_prophet, corpus[: args.prophet_series], args.workers)
        print(f"prophet-bands (first {min(len(corpus), args.prophet_series)} series):   {theirs:8.1f} series/s")
        print(f"ratio smartmetrics / prophet-bands:          {ours / theirs:8.1f}x")


if __name__ == "__main__":
    main()
