"""`smartmetrics alerts` and `smartmetrics feedback`: the alert history of a store, and on-call's word on it.

Both read `<store>/alerts.json` as the daemon writes it (`smartmetrics.app.alerts`); `feedback`
writes it too, or asks the running daemon to (`--url`), which then keeps it in step with the
webhooks it is receiving.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from smartmetrics.adapters.alert_store import AlertStoreError, load_alerts
from smartmetrics.adapters.api import MatchError
from smartmetrics.app.alerts import AlertBook, FeedbackError, parse_since, select_records
from smartmetrics.config import Config
from smartmetrics.engine.alerts import AlertRecord
from smartmetrics.engine.durations import format_duration

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def render_value_vs_band(r: AlertRecord) -> str:
    """`180 > [90, 110] (yhat 100)`: the value at the start against the band it left."""
    if r.lower is None or r.upper is None:
        return f"{_number(r.value)} (no band)"
    sign = {"above": ">", "below": "<"}.get(r.side or "", "?")
    return f"{_number(r.value)} {sign} [{_number(r.lower)}, {_number(r.upper)}] (yhat {_number(r.yhat)})"


def render_duration(r: AlertRecord, now: float) -> str:
    if r.ends_at is None:
        return f"firing {format_duration(round(max(now - r.starts_at, 0)))}"
    return format_duration(round(max(r.ends_at - r.starts_at, 0)))


def print_alerts(records: Sequence[AlertRecord], now: float, file: Any = None) -> None:
    """A rich table: when, baseline, series, value vs band, duration, feedback and the id to give feedback on."""
    from rich.table import Table

    from smartmetrics.app.terminal import make_console

    table = Table(title=f"{len(records)} recorded alerts", show_lines=False)
    for title in ("when (UTC)", "baseline", "series", "value vs band", "duration", "feedback", "id"):
        table.add_column(title, overflow="fold")
    for r in records:
        when = datetime.fromtimestamp(r.starts_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, r.baseline, r.series, render_value_vs_band(r), render_duration(r, now),
                      r.feedback or "-", r.id)
    (make_console() if file is None else _console(file)).print(table)


def _console(file: Any) -> Any:
    from rich.console import Console

    return Console(file=file, width=200)


def run_alerts(config: Config, aliases: Sequence[str] | None, since: str | None, match: str, as_json: bool) -> int:
    """The `alerts` command: the store's recorded alerts, newest first."""
    now = time.time()
    try:
        bound = parse_since(since, now) if since else None
        records = load_alerts(config.store.path)
        chosen = [r for r in select_records(records, None, match, bound) if not aliases or r.baseline in aliases]
    except (ValueError, MatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AlertStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if as_json:
        print(json.dumps([r.to_doc() for r in chosen], indent=1))
    else:
        print_alerts(chosen, now)
    return EXIT_OK


def run_feedback_file(config: Config, alert_id: str, feedback: str) -> int:
    """The `feedback` command without `--url`: write the word into the store's history directly."""
    try:
        book = AlertBook(config.store.path, _raise_store_error)
        record = book.feedback(alert_id, feedback, time.time())
    except FeedbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AlertStoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"alert {record.id} ({record.baseline} {record.series}): {record.feedback}")
    return EXIT_OK


def _raise_store_error(operation: str) -> None:
    """Without a daemon to keep serving, an unreadable or unwritable history is the command's failure."""
    raise AlertStoreError(f"the alert history could not be {'read' if operation == 'read' else 'written'}")
