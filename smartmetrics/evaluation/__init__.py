"""Evaluation: how good the bands are. The walk-forward backtest, `evaluate` against the peers on NAB,
the real corpora and the synthetic corpus, the scores (NAB, event F1, false alerts, coverage), the
peers themselves, the synthetic corpus and sensitivity tuning.

It may import the engine, the adapters and the config; never the renderers or the app.
"""
