"""Classification benchmark: accuracy on the synthetic corpus, speed against a full robust STL, NAB types.

    python -m smartmetrics.benchmarks.classify [--n 2400] [--seed 2026] [--nab DIR]

Prints markdown tables: (a) confusion matrix, overall / per-type / per-noise accuracy and period
accuracy on a freshly generated corpus (a seed the thresholds were not chosen on); (b) series/s for
14 days at 5-minute and 1-minute step, in one process and in a process pool, beside classifying from a
statsmodels robust STL per series, timed on a sample; (c) the type of each NAB file under `--nab`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from smartmetrics.adapters.files import read_csv_series
from smartmetrics.engine.classify import classify_values, format_periods
from smartmetrics.evaluation.synth import CURVE_KINDS, NOISE_LEVELS, LabelledSeries, make_corpus


def periods_match(found: Sequence[int], truth: Sequence[int], step: int) -> bool:
    """Every true period found within one step, and nothing extra (order not scored).

    >>> periods_match((86400, 604800), (604800, 86700), 300)
    True
    """
    return len(found) == len(truth) and all(any(abs(f - t) <= step for f in found) for t in truth)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report_accuracy(corpus: list[LabelledSeries], predicted: list[tuple[str, tuple[int, ...]]]) -> str:
    """Confusion matrix, overall, per-type, per-noise and with/without-anomaly accuracy, period accuracy."""
    truth = [c.curve_type for c in corpus]
    pairs = Counter(zip(truth, (p for p, _ in predicted)))
    matrix = [[t] + [pairs[(t, p)] or "." for p in CURVE_KINDS] for t in CURVE_KINDS]
    ok = np.array([t == p for t, (p, _) in zip(truth, predicted)])
    out = [f"{len(corpus)} series, overall accuracy {ok.mean():.2%}", "",
           "Confusion matrix (rows: truth, columns: assigned)", "",
           _table(["truth \\ assigned", *CURVE_KINDS], matrix), ""]
    per_type = [[k, f"{ok[[t == k for t in truth]].mean():.1%}"] for k in CURVE_KINDS]
    per_noise = [[n, f"{ok[[c.noise == n for c in corpus]].mean():.1%}"] for n in NOISE_LEVELS]
    anomalous = np.array([bool(c.anomalies) for c in corpus])
    per_noise += [["with anomalies", f"{ok[anomalous].mean():.1%}"],
                  ["without anomalies", f"{ok[~anomalous].mean():.1%}"]]
    out += [_table(["type", "accuracy"], per_type), "", _table(["subset", "accuracy"], per_noise), ""]
    seasonal = [(c, f) for c, (_, f) in zip(corpus, predicted) if c.curve_type == "seasonal"]
    hits = [periods_match(f, c.periods, c.series.step) for c, f in seasonal]
    by_variant: dict[str, list[bool]] = {}
    for (c, _), hit in zip(seasonal, hits):
        by_variant.setdefault(c.variant.replace("+trend", ""), []).append(hit)
    out += [f"Periods within one step (set of true periods found, nothing extra) on {len(seasonal)} seasonal "
            f"series: {np.mean(hits):.2%}", "",
            _table(["seasonal variant", "series", "periods right"],
                   [[v, len(h), f"{np.mean(h):.1%}"] for v, h in sorted(by_variant.items())])]
    return "\n".join(out)


def _ours(args: tuple[np.ndarray, int]) -> tuple[str, tuple[int, ...]]:
    result = classify_values(*args)
    return result.curve_type, result.periods


def stl_classify(values: np.ndarray, step: int) -> str:
    """The slow reference: a full robust STL (daily period) per series, then strength-based rules."""
    from statsmodels.tsa.seasonal import STL

    from smartmetrics.engine.robust import fill_gaps

    x = fill_gaps(values)
    fit = STL(x, period=86400 // step, robust=True).fit()
    resid = np.var(fit.resid)
    seasonal = 1 - resid / max(np.var(fit.seasonal + fit.resid), 1e-12)
    trend = 1 - resid / max(np.var(fit.trend + fit.resid), 1e-12)
    return "seasonal" if seasonal >= 0.4 else "trending" if trend >= 0.5 else "stable"


def _rate(fn: Callable[[tuple[np.ndarray, int]], object], jobs: list[tuple[np.ndarray, int]],
          workers: int) -> tuple[float, float]:
    """(series per wall-clock second, series per CPU second of this process) for `fn` over `jobs`, in
    this process or a pool of `workers` (the CPU figure is only meaningful for one process)."""
    if workers <= 1:
        start, cpu = time.perf_counter(), time.process_time()
        for job in jobs:
            fn(job)
    else:
        with ProcessPoolExecutor(workers) as pool:  # started and warmed up first, as a daemon's pool is
            list(pool.map(fn, jobs[:workers], chunksize=1))
            start, cpu = time.perf_counter(), time.process_time()
            list(pool.map(fn, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return len(jobs) / wall, len(jobs) / max(cpu, 1e-9)


def _stl_job(args: tuple[np.ndarray, int]) -> str:
    return stl_classify(*args)


def report_speed(n: int, stl_n: int, workers: int, seed: int) -> str:
    """Series/s at 5-minute and 1-minute step, ours (1 process and a pool) against a robust STL.

    The machine is shared, so besides wall-clock rates the table gives series per CPU-second of one
    process (what an idle core would do) and the load average while measuring.
    """
    rows = []
    for step, count, stl_count in ((300, n, stl_n), (60, max(50, n // 4), max(2, stl_n // 4))):
        jobs = [(c.series.values, step) for c in make_corpus(count, step=step, seed=seed + step)
                if c.curve_type != "insufficient"]
        one, one_cpu = _rate(_ours, jobs, 1)
        pool, _ = _rate(_ours, jobs, workers)
        stl, stl_cpu = _rate(_stl_job, jobs[:stl_count], 1)
        rows.append([f"{step // 60}-minute", len(jobs[0][0]), len(jobs), f"{one:,.0f} / {one_cpu:,.0f}",
                     f"{pool:,.0f}", f"{stl:.2f} / {stl_cpu:.2f} (on {stl_count})", f"{one_cpu / stl_cpu:,.0f}x",
                     f"{os.getloadavg()[0]:.1f}"])
    return _table(["step (14 days)", "points", "series", "ours, 1 process: series/s wall / per CPU-s",
                   f"ours, {workers} processes: series/s wall", "robust STL, 1 process: series/s wall / per CPU-s",
                   "ours / STL (per CPU-s)", "load avg (1 min)"], rows)


def report_nab(folder: str) -> str:
    """The type, periods, confidence and deciding reason for each NAB CSV under `folder`/*/*.csv."""
    rows = []
    for path in sorted(Path(folder).glob("*/*.csv")):
        series = read_csv_series(path)
        result = classify_values(series.values, series.step)
        rows.append([f"{path.parent.name}/{path.name}", result.curve_type, format_periods(result.periods),
                     f"{result.confidence:.2f}", "; ".join(result.reasons[:2])])
    return _table(["file", "type", "periods", "confidence", "why"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2400, help="corpus size for accuracy (default 2400)")
    parser.add_argument("--seed", type=int, default=2026, help="corpus seed (default 2026)")
    parser.add_argument("--speed-n", type=int, default=2400, help="series timed at 5-minute step")
    parser.add_argument("--stl-n", type=int, default=8, help="series timed with robust STL at 5-minute step")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="pool size for the speed run")
    parser.add_argument("--nab", metavar="DIR", help="also classify every DIR/*/*.csv")
    args = parser.parse_args(argv)
    corpus = make_corpus(args.n, seed=args.seed)
    predicted = [_ours((c.series.values, c.series.step)) for c in corpus]
    print("### (a) accuracy (14 days at 5-minute step, seed %d)\n" % args.seed)
    print(report_accuracy(corpus, predicted))
    print("\n### (b) speed\n")
    print(report_speed(args.speed_n, args.stl_n, args.workers, args.seed))
    if args.nab:
        print(f"\n### (c) NAB files ({args.nab})\n")
        print(report_nab(args.nab))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
