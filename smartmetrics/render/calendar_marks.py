"""What a baseline's calendar puts on its dashboard (issue 25): one annotation query per kind of day
or event it configures, over the daemon's `smartmetrics_calendar_event_active{baseline,event,kind}`
(holidays, window and cron events), and one per PromQL event, over its own expr: the daemon lists
PromQL events in that metric too, but only while it follows them, so their kind's query leaves them out.
"""

from __future__ import annotations

import re

from smartmetrics.config import Baseline
from smartmetrics.render.promql import quote

EVENT_ACTIVE = "smartmetrics_calendar_event_active"  # a self-metric, read by name
KINDS = (("holiday", "Holidays", "yellow"), ("maintenance", "Maintenance windows", "gray"),
         ("expected_change", "Expected changes", "orange"))


def calendar_marks(alias: str, baseline: Baseline) -> list[tuple[str, str, str]]:
    """(annotation name, PromQL, colour) for each kind the baseline's calendar has, then each PromQL event.

    >>> from smartmetrics.config import parse_config
    >>> b = parse_config({"sources": {"p": {"url": "http://localhost:9090"}}, "baselines": {"q": {"expr": "up",
    ...     "calendar": {"events": [{"name": "freeze", "expr": "freeze_on", "kind": "expected_change"},
    ...     {"name": "backup", "cron": "0 2 * * 0", "duration": "2h"}]}}}}).baselines["q"]
    >>> for mark in calendar_marks("q", b): print(mark)
    ('Maintenance windows', 'smartmetrics_calendar_event_active{baseline="q", kind="maintenance", event!~"freeze"} == 1', 'gray')
    ('freeze (expected_change)', '(freeze_on) != 0', 'orange')
    """
    calendar = baseline.calendar
    if calendar is None:
        return []
    kinds = {e.kind for e in calendar.events if e.expr is None} | ({"holiday"} if calendar.holidays else set())
    promql = [re.escape(e.name) for e in calendar.events if e.expr is not None]
    unless = f", event!~{quote('|'.join(promql))}" if promql else ""
    marks = [(title, f'{EVENT_ACTIVE}{{baseline={quote(alias)}, kind="{kind}"{unless}}} == 1', colour)
             for kind, title, colour in KINDS if kind in kinds]
    colours = {kind: colour for kind, _, colour in KINDS}
    return marks + [(f"{e.name} ({e.kind})", f"({e.expr}) != 0", colours[e.kind])
                    for e in calendar.events if e.expr is not None]
