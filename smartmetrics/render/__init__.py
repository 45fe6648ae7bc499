"""Renderers: what smartmetrics generates for others to run. Prometheus recording and alerting rules
with their `promtool test rules` cases, Grafana dashboards and Grafana-managed alerts, and PNG plots.

They may import the engine, the adapters (to read the store) and the config; never the evaluation
or the app.
"""
