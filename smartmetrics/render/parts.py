"""The parts every generated Prometheus rule, rule test and Grafana alert is made of: the recording
rules' names, alert names and thresholds, how value and band are matched (`on(...)`), labels,
annotations and dashboard links, and deterministic YAML written atomically. `rules`, `stuck_rules`,
`sustained_rules`, `rule_cases`, `grafana` and `grafana_alerts` build on it; it imports none of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from smartmetrics.adapters.exporter import export_labels
from smartmetrics.adapters.store import write_atomic
from smartmetrics.config import Alert, Baseline, Config
from smartmetrics.engine.durations import format_duration
from smartmetrics.engine.firing import EPSILON, AlertRules, for_seconds
from smartmetrics.engine.state import BaselineState
from smartmetrics.render.promql import RulesError, check_label_name, expr_label_names, number, selector

VALUE, SCORE = "smartmetrics:value", "smartmetrics:anomaly_score"
YHAT, LOWER, UPPER = "smartmetrics_yhat", "smartmetrics_yhat_lower", "smartmetrics_yhat_upper"
VALUE_PANEL_ID = 1
"""The id of the value-and-band panel on every baseline dashboard (alert links open it)."""




def stored_label_names(state: BaselineState) -> tuple[str, ...]:
    """The exported label names of a baseline's fitted series (union, sorted, without `baseline`)."""
    names = {n for band in state.series for n in export_labels(state.alias, band.labels)}
    names.discard("baseline")
    return tuple(sorted(names))


def series_label_names(config: Config, states: Mapping[str, BaselineState]) -> dict[str, tuple[str, ...]]:
    """Per baseline, the series' own label names: from the store, else from the expr, else an error."""
    out: dict[str, tuple[str, ...]] = {}
    for alias, baseline in config.baselines.items():
        state = states.get(alias)
        names = stored_label_names(state) if state and state.series else expr_label_names(baseline.expr)
        if names is None:
            raise RulesError(
                f"baselines.{alias}: no fitted series in the store and the expr has no outer `by (...)` "
                f"aggregation to read the series labels from; run `smartmetrics fit` first")
        out[alias] = tuple(check_label_name(n, f"baselines.{alias} series label") for n in names)
    return out


def alert_name(alias: str) -> str:
    """The alert name of a baseline: its alias in CamelCase plus `Anomaly`.

    >>> alert_name("inference_qps"), alert_name("p99-latency"), alert_name("9x")
    ('InferenceQpsAnomaly', 'P99LatencyAnomaly', 'Baseline9xAnomaly')
    """
    words = [w for w in re.split(r"[^A-Za-z0-9]+", alias) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words)
    if not name or not name[0].isalpha():
        name = "Baseline" + name
    return name + "Anomaly"


def score_threshold(baseline: Baseline) -> float:
    """The score above which the baseline alerts: its sensitivity's threshold (1 is the band edge),
    as the replay applies it (`smartmetrics.engine.firing.AlertRules`)."""
    return AlertRules.of_baseline(baseline).threshold


def keep_firing_seconds(baseline: Baseline) -> float:
    """How long an alert keeps firing after the score falls back (one incident, one alert)."""
    return AlertRules.of_baseline(baseline).keep_seconds


def keep_firing(baseline: Baseline) -> dict[str, str]:
    """An alerting rule's `keep_firing_for` entry (none when the sensitivity keeps nothing)."""
    seconds = keep_firing_seconds(baseline)
    return {"keep_firing_for": format_duration(seconds)} if seconds else {}


def _on(names: Iterable[str]) -> str:
    return "on(" + ", ".join(("baseline", *names)) + ")"


def render_value_rule(alias: str, baseline: Baseline) -> dict[str, Any]:
    """`smartmetrics:value`: the expr, its own `baseline` label moved to `exported_baseline` as the exporter does."""
    # The expr sits on its own lines so that a trailing `# comment` in it cannot swallow the rest.
    expr = f'label_replace(\n  {baseline.expr}\n, "exported_baseline", "$1", "baseline", "(.+)")'
    return {"record": VALUE, "expr": expr, "labels": {"baseline": alias}}


def render_score_rule(alias: str, names: tuple[str, ...]) -> dict[str, Any]:
    """`smartmetrics:anomaly_score`: each side's deviation over its own half-band, the other side 0."""
    on = _on(names)
    value, yhat = selector(VALUE, alias), selector(YHAT, alias)
    upper, lower = selector(UPPER, alias), selector(LOWER, alias)
    eps = number(EPSILON)
    above = f"clamp_min(\n  ({value} - {on} {yhat})\n  / {on}\n  clamp_min({upper} - {on} {yhat}, {eps}),\n  0)"
    below = f"clamp_min(\n  ({yhat} - {on} {value})\n  / {on}\n  clamp_min({yhat} - {on} {lower}, {eps}),\n  0)"
    return {"record": SCORE, "expr": f"{above}\n+ {on}\n{below}", "labels": {"baseline": alias}}


def alert_condition(alias: str, alert: Alert, names: tuple[str, ...], threshold: float | None = None) -> str:
    """The series that should alert (score over `threshold`, on the allowed side, deviation big enough).

    With `threshold=None` the score comparison is left out (Grafana applies it as its own step).
    """
    on = _on(names)
    value, yhat = selector(VALUE, alias), selector(YHAT, alias)
    parts = [selector(SCORE, alias) + ("" if threshold is None else f" > {number(threshold)}")]
    if alert.direction != "both":
        parts.append(f"({value} {'>' if alert.direction == 'up' else '<'} {on} {yhat})")
    deviation = f"abs({value} - {on} {yhat})"
    if alert.min_abs_deviation > 0:
        parts.append(f"({deviation} >= {number(alert.min_abs_deviation)})")
    if alert.min_rel_deviation > 0:
        parts.append(f"({deviation} >= {on} {number(alert.min_rel_deviation)} * abs({yhat}))")
    return f"\nand {on}\n".join(parts)


def query_template(metric: str, names: tuple[str, ...], missing: str = "") -> str:
    """A Go template that shows `metric` for the alerting series (labels quoted by `%q`), or `missing`
    where the query finds nothing."""
    matchers = ",".join(f"{n}=%q" for n in ("baseline", *names))
    args = " ".join(f"$labels.{n}" for n in ("baseline", *names))
    end = f"{{{{ else }}}}{missing}{{{{ end }}}}" if missing else "{{ end }}"
    return f'{{{{ with printf "{metric}{{{matchers}}}" {args} | query }}}}' \
           '{{ . | first | value | printf "%.4g" }}' + end


def escape_template(text: str) -> str:
    """Text that a Go template prints as is (its `{{` turned into an action printing `{{`).

    >>> escape_template("a{{b}}")
    'a{{ "{{" }}b}}'
    """
    return text.replace("{{", '{{ "{{" }}')


def dashboard_uid(alias: str) -> str:
    """The uid of a baseline's Grafana dashboard: readable, unique per alias, at most 40 characters.

    >>> dashboard_uid("inference_qps")
    'sm-inference_qps-932923f0'
    """
    digest = hashlib.sha256(alias.encode()).hexdigest()[:8]
    return f"sm-{re.sub(r'[^A-Za-z0-9_-]+', '-', alias)[:27]}-{digest}"


def dashboard_link(grafana_url: str, alias: str, names: tuple[str, ...]) -> str:
    """A templated link to the baseline's value panel, with the alerting series selected."""
    params = "".join(f"&var-{n}={{{{ $labels.{n} | urlquery }}}}" for n in names)
    return f"{grafana_url}/d/{dashboard_uid(alias)}/?orgId=1&viewPanel={VALUE_PANEL_ID}{params}"


def check_grafana_url(url: str) -> str:
    """The Grafana base URL without trailing slash; a `RulesError` if it is not a plain http(s) URL."""
    if not re.match(r"^https?://[^\s{}\"<>]+$", url):
        raise RulesError(f"grafana url {url!r} must be a plain http:// or https:// URL")
    return url.rstrip("/")


def render_annotations(alias: str, alert: Alert, names: tuple[str, ...], grafana_url: str | None) -> dict[str, str]:
    """Value, expected range, score and baseline as templates, the user's annotations on top."""
    value, yhat = query_template(VALUE, names), query_template(YHAT, names)
    lower, upper = query_template(LOWER, names), query_template(UPPER, names)
    out = {
        "summary": "{{ $labels.baseline }} is outside its expected range",
        "description": (f"Value {value} is outside the expected range {lower} to {upper} (expected {yhat}); "
                        'anomaly score {{ $value | printf "%.2f" }}.'),
        "value": value,
        "expected_range": f"{lower} to {upper}",
        "anomaly_score": '{{ $value | printf "%.2f" }}',
        "baseline": "{{ $labels.baseline }}",
    }
    return finish_annotations(out, alias, alert, names, grafana_url)


def finish_annotations(out: dict[str, str], alias: str, alert: Alert, names: tuple[str, ...],
                       grafana_url: str | None) -> dict[str, str]:
    """Add the dashboard link (with a Grafana URL) and the user's annotations on top; sorted."""
    if grafana_url:
        out["dashboard"] = dashboard_link(check_grafana_url(grafana_url), alias, names)
    out.update(alert.annotations)
    return dict(sorted(out.items()))


def render_alert_labels(alias: str, alert: Alert) -> dict[str, str]:
    """Extra labels (escaped against templating), then `severity` and `baseline`, which they cannot override."""
    out = {check_label_name(k, f"baselines.{alias}.alert.labels"): escape_template(v) for k, v in alert.labels.items()}
    out.update({"severity": escape_template(alert.severity), "baseline": escape_template(alias)})
    return dict(sorted(out.items()))


def render_alert_rule(alias: str, baseline: Baseline, names: tuple[str, ...],
                      grafana_url: str | None = None) -> dict[str, Any]:
    """The one alerting rule of a baseline."""
    alert = baseline.alert
    return {
        "alert": alert_name(alias),
        "expr": alert_condition(alias, alert, names, score_threshold(baseline)),
        "for": format_duration(for_seconds(baseline)),
        **keep_firing(baseline),
        "labels": render_alert_labels(alias, alert),
        "annotations": render_annotations(alias, alert, names, grafana_url),
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks; everything else as PyYAML would write it."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def render_yaml(doc: Any, header: str = "") -> str:
    """Deterministic YAML (insertion order, no line wrapping, unicode kept), after a comment header."""
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=10**9, allow_unicode=True,
                     default_flow_style=False)
    return header + body


def write_files(out: str | Path, files: Mapping[str, str]) -> list[Path]:
    """Write each file under `out` atomically (temp file, then rename); returns the paths written."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(files):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        body = files[name].encode("utf-8")
        written.append(write_atomic(target, lambda fh, body=body: fh.write(body), f".{target.name}.", ".tmp"))
    return written
