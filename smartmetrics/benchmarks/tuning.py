"""Alert tuning on the demo's history: per baseline of configs/demo.yaml, the alert rate on 14 days of
synthetic AI-serving metrics (a local Prometheus) at the configured and at the tuned settings, against
a budget; and a PNG of one series with its band, as the Grafana baseline panel draws it.

    python -m smartmetrics.benchmarks.tuning [--budget 1/week] [--png notebooks/baseline_panel.png]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console

from smartmetrics.adapters.source import fetch_baseline
from smartmetrics.app.demo import demo_config
from smartmetrics.app.demo_data import generate_demo_metrics
from smartmetrics.app.promlocal import LocalPrometheus, free_port
from smartmetrics.config import Config, load_config
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.series import Series, align_down
from smartmetrics.evaluation.tune import engine_fit, replay_series, run_tune

PANEL_BASELINE, PANEL_LABELS = "inference_qps", {"model_name": "llama-3-8b", "tenant_id": "acme"}


def panel_frame(config: Config, series: Series, sensitivity: float | str) -> pd.DataFrame:
    """The walk-forward replay of one series as a backtest table (value, band, firing, alert onsets)."""
    baseline = config.baselines[PANEL_BASELINE]
    replay = replay_series(series, engine_fit(baseline, PANEL_BASELINE)(sensitivity), int(baseline.history), follow=baseline.follow)
    fired = replay.fired(AlertRules.of_baseline(baseline).with_sensitivity(sensitivity))
    return pd.DataFrame({"timestamp": replay.timestamps, "value": replay.values, "yhat": replay.yhat,
                         "yhat_lower": replay.lower, "yhat_upper": replay.upper,
                         "firing": fired.firing.astype(int), "alert": fired.alert.astype(int)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="1/week")
    parser.add_argument("--png", default="notebooks/baseline_panel.png")
    args = parser.parse_args()
    console = Console(width=200)
    end = align_down(time.time(), 3600)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, LocalPrometheus(generate_demo_metrics(end)) as prom:
        path = demo_config(Path("configs/demo.yaml"), prom.url, Path(tmp), free_port())
        config = load_config(path)
        console.print(f"local Prometheus with 14 days of demo metrics ready in {time.perf_counter() - started:.0f} s")
        run_tune(str(path), config, list(config.baselines), args.budget, write=False, console=console, end=end)
        fetched = fetch_baseline(config, PANEL_BASELINE, end)
        series = next(s for s in fetched.series if s.labels == PANEL_LABELS)
        frame = panel_frame(config, series, config.baselines[PANEL_BASELINE].sensitivity)
    from smartmetrics.render.plots import plot_band

    title = (f"{PANEL_BASELINE} {{model_name=\"llama-3-8b\", tenant_id=\"acme\"}}: value, expected and band "
             "(walk-forward, daily retrain); a tenant outage in the last day")
    plot_band(frame, args.png, title=title, last=3 * 86400)
    console.print(f"wrote {args.png}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
