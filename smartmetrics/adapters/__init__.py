"""The edges where smartmetrics meets the world: Prometheus-compatible sources read over HTTP (and the
release markers among them), the store on disk, local CSV files, the `/metrics` exporter and the
HTTP server with its JSON API.

They may import the engine, `smartmetrics.config` and `smartmetrics.settings`; never the renderers,
the evaluation or the app.
"""
