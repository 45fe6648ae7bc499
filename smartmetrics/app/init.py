"""`smartmetrics init`: read what a Prometheus holds, propose the baselines worth having, try each
expr against it, and write a commented config (or, with `--dry-run`, print what it would write and why).

The proposals come from `smartmetrics.render.presets` (well-known exporters, `smartmetrics.instrument`)
and `smartmetrics.render.proposals` (every other metric by its type and name), best first. A proposal
is kept only if its expr returns series now and is not constant over the last 6 hours; a source too
young to judge (fewer than an hour of 5-minute points) is given the benefit of the doubt, and the
proposal's why says so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from smartmetrics.adapters.catalog import Catalog
from smartmetrics.adapters.source import SourceError
from smartmetrics.config import Source, parse_config, redact_url
from smartmetrics.render.parts import write_files
from smartmetrics.render.presets import covered, preset_candidates
from smartmetrics.render.proposals import Candidate, Proposal, Skipped, plan_candidates

log = logging.getLogger(__name__)

CONSTANT_WINDOW = "6h"
MIN_JUDGED_POINTS = 12
"""Fewer 5-minute points of the expr than this (an hour) in CONSTANT_WINDOW: too young to call it constant."""
SAMPLE_LIMIT = 500
SOURCE_NAME = "prometheus"


@dataclass
class Plan:
    """The proposals kept (best first), each with how many series it returns now, and what was left out."""

    proposals: list[tuple[Proposal, int]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    names: int = 0


def make_plan(catalog: Catalog, match: re.Pattern[str] | None, max_baselines: int) -> Plan:
    """Propose, build from label samples, and try each candidate against the source, best first,
    until `max_baselines` are kept."""
    names = [n for n in catalog.fetch_names() if match is None or match.search(n)]
    try:
        metadata = catalog.fetch_metadata()
    except SourceError as exc:  # some Prometheus-compatible stores have no metadata: names decide then
        log.warning("no metric metadata (%s); types are read from the metric names", exc)
        metadata = {}
    generic, skipped = plan_candidates(names, metadata, covered)
    candidates = sorted([*preset_candidates(names), *generic], key=lambda c: (-c.score, c.alias))
    plan = Plan(skipped=skipped, names=len(names))
    samples: dict[str, list[dict[str, str]]] = {}
    aliases: set[str] = set()
    for candidate in candidates:
        if len(plan.proposals) >= max_baselines:
            break
        if candidate.metric not in samples:
            samples[candidate.metric] = catalog.fetch_series(candidate.metric, SAMPLE_LIMIT)
        proposal = candidate.build(samples[candidate.metric])
        if proposal is None or proposal.alias in aliases:
            continue
        found = _try(catalog, candidate, proposal)
        if isinstance(found, str):
            plan.skipped.append(Skipped(proposal.alias, found))
            continue
        count, note = found
        aliases.add(proposal.alias)
        plan.proposals.append((replace(proposal, why=f"{proposal.why}; {note}") if note else proposal, count))
    return plan


def _count(result: list[dict]) -> int:
    return int(float(result[0]["value"][1])) if result else 0


def _try(catalog: Catalog, candidate: Candidate, proposal: Proposal) -> tuple[int, str] | str:
    """(how many series the expr returns now, a note for its why), or why it is left out (none; constant).

    Constant means: enough history (MIN_JUDGED_POINTS) and no series ever varied over it. Fewer points
    (a Prometheus started minutes ago) cannot tell, so the expr is kept with a note saying so."""
    count = _count(catalog.query(f"count({proposal.expr})"))
    if count == 0:
        return f"{proposal.expr} returns no series now"
    window = f"({proposal.expr})[{CONSTANT_WINDOW}:5m]"
    if catalog.query(f"count(stddev_over_time({window}) > 0)"):
        return count, ""
    points = _count(catalog.query(f"max(count_over_time({window}))"))
    if points < MIN_JUDGED_POINTS:
        return count, (f"too little history to judge constancy ({points} of {MIN_JUDGED_POINTS} 5m points "
                       f"in the last {CONSTANT_WINDOW}), kept")
    return f"constant over the last {CONSTANT_WINDOW} ({candidate.metric})"


def render_init_config(source: Source, plan: Plan, command: str) -> str:
    """The config text: a header saying where it came from and what next, the source, and each
    baseline after a `# why:` comment."""
    left_out = len(plan.skipped)
    lines = [
        f"# Written by `{command}`: {len(plan.proposals)} baselines proposed from {plan.names} metric names "
        f"({left_out} left out; `--dry-run` lists them with why).",
        "# Review and edit, then:",
        "#   smartmetrics check-config F && smartmetrics fit --config F",
        "#   smartmetrics rules --config F --out rules/ && smartmetrics grafana --config F --out grafana/",
    ]
    source_doc: dict[str, object] = {"url": source.url}
    if source.headers:
        source_doc["headers"] = dict(source.headers)
    lines += yaml.safe_dump({"sources": {SOURCE_NAME: source_doc}}, sort_keys=False).splitlines()
    lines += ["", "baselines:"]  # each baseline follows a blank line
    for proposal, count in plan.proposals:
        body: dict[str, object] = {"expr": proposal.expr}
        if proposal.range is not None:
            body["range"] = list(proposal.range)
        body["alert"] = {"direction": proposal.direction}
        block = yaml.safe_dump({proposal.alias: body}, sort_keys=False, width=10**9, default_flow_style=None)
        block = re.sub(r"alert: \{direction: (\w+)\}", r"alert:\n    direction: \1", block)
        lines += ["", f"  # why: {proposal.why}; {count} series now"]
        lines += [f"  {line}" for line in block.splitlines()]
    return "\n".join(lines) + "\n"


def print_plan(console: Console, plan: Plan) -> None:
    """The dry run: what would be written and why, then what was left out and why."""
    table = Table(title=f"{len(plan.proposals)} baselines would be written", show_lines=False)
    for column in ("baseline", "expr", "alert", "series", "why"):
        table.add_column(column, overflow="fold")
    for proposal, count in plan.proposals:
        alert = proposal.direction + (f", range {list(proposal.range)}" if proposal.range else "")
        table.add_row(proposal.alias, proposal.expr, alert, str(count), proposal.why)
    console.print(table)
    reasons: dict[str, list[str]] = {}
    for item in plan.skipped:
        reasons.setdefault(item.reason, []).append(item.name)
    left = Table(title=f"{len(plan.skipped)} left out")
    for column in ("why", "count", "metrics or baselines"):
        left.add_column(column, overflow="fold")
    for reason, names in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        left.add_row(reason, str(len(names)), ", ".join(names[:8]) + (", ..." if len(names) > 8 else ""))
    console.print(left)


def run_init(source: Source, out: Path, match: re.Pattern[str] | None, max_baselines: int, dry_run: bool,
             console: Console) -> Plan:
    """Plan against `source`; print it (dry run) or write the config atomically (when anything was
    proposed). SourceError and OSError propagate to the CLI."""
    with Catalog(source, SOURCE_NAME) as catalog:
        plan = make_plan(catalog, match, max_baselines)
    if dry_run:
        print_plan(console, plan)
        return plan
    if not plan.proposals:
        return plan
    text = render_init_config(source, plan, f"smartmetrics init --source {redact_url(source.url)}")
    parse_config(yaml.safe_load(text), str(out))  # never write what check-config would refuse
    write_files(out.parent, {out.name: text})
    return plan
