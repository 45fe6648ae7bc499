"""Series batches: a large baseline over a plain selector, asked for a group of its series at a time.

Cut in time (`smartmetrics.adapters.source`), a large range query returns every series in every
piece, so the first complete series arrives with the last piece and one failed piece fails them all.
For a plain vector selector (`metric{...}`, or `{...}` alone) the series are listed first
(`/api/v1/series` over the range, which also finds the series that stopped before its end), the
baseline's share chosen before any value is asked for (this shard's own, then the first `max_series`
by labels, as `GridSeries.render` keeps them), and the values fetched in batches: the series whose
value of one label is one of a few, `label=~"v1|v2|..."`. A batch is complete as soon as its own
requests are, so its series can be fitted while later batches are on their way; a batch that still
fails after its retries costs only its own series. Any other expr (a function, an operator, an
aggregation) has no series to list before it is evaluated: a recording rule makes it a plain selector.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from smartmetrics.adapters.client import PrometheusClient, SourceError, gather_or_cancel
from smartmetrics.adapters.matrix import (
    GridSeries,
    LabelKey,
    parse_labels,
    piece_points,
    sorted_entries,
    split_range,
)
from smartmetrics.config import Source
from smartmetrics.engine.series import Series

log = logging.getLogger("smartmetrics.adapters.source")

LOOKBACK = 300
"""Prometheus' default lookback (seconds): a series whose last sample is this close before the range
still has a value at its start, so the listing begins this much earlier."""

_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")  # a name a matcher can use unquoted, in any Prometheus
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")

Matcher = tuple[str, str, str]  # (label, op, value)


@dataclass(frozen=True)
class Selector:
    """A plain vector selector: its metric name (None for `{...}` alone) and its label matchers."""

    name: str | None
    matchers: tuple[Matcher, ...]

    def render(self, *extra: Matcher) -> str:
        r"""The selector as PromQL, `extra` matchers added; the metric name as a `__name__` matcher (so
        that a batch may match on it too), values quoted as JSON strings, which PromQL reads the same way.

        >>> print(Selector("up", (("job", "=", 'a"b'),)).render(("i", "=~", "x|y")))
        {__name__="up",job="a\"b",i=~"x|y"}
        """
        named = (("__name__", "=", self.name),) if self.name else ()
        return "{" + ",".join(f"{_name(label)}{op}{json.dumps(value, ensure_ascii=False)}"
                              for label, op, value in (*named, *self.matchers, *extra)) + "}"


def _name(label: str) -> str:
    """A label name as a matcher writes it: quoted when it is not a classic name (Prometheus 3 allows
    any UTF-8 name, written `"my.label"="x"`)."""
    return label if _LABEL_NAME.match(label) else json.dumps(label, ensure_ascii=False)


def parse_selector(expr: str) -> Selector | None:
    """`expr` as a plain vector selector, or None for anything else: a function, an operator, an
    aggregation, a range, an offset or `@`, matchers joined by `or`. Only a plain selector's series can
    be listed before it is evaluated.

    >>> parse_selector('up{job="api"}'), parse_selector("rate(up[5m])"), parse_selector("up offset 5m")
    (Selector(name='up', matchers=(('job', '=', 'api'),)), None, None)
    """
    import promql_parser  # not at the top: serving the stored bands never needs the parser

    try:
        node = promql_parser.parse(expr)
    except Exception:  # noqa: BLE001 - whatever the parser refuses is not a plain selector
        return None
    if not isinstance(node, promql_parser.VectorSelector) or node.offset is not None or node.at is not None:
        return None
    if node.matchers.or_matchers:
        return None
    return Selector(node.name, tuple((m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value)
                                     for m in node.matchers.matchers))


def escape_re2(value: str) -> str:
    r"""`value` as a regular expression (RE2, as Prometheus reads it) that matches only itself.

    >>> print(escape_re2("a.b|c+(d)"))
    a\.b\|c\+\(d\)
    """
    return _RE2_SPECIAL.sub(r"\\\1", value)


@dataclass(frozen=True)
class Batch:
    """Series asked for in one query: those whose `label` is one of `values` ("" for those without it);
    `keys` are the ones wanted, `matched` how many the query returns (other shards' and those past
    `max_series` share the values too: the request is sized for all of them)."""

    label: str
    values: tuple[str, ...]
    keys: tuple[LabelKey, ...]
    matched: int = 0

    def expr(self, selector: Selector) -> str:
        r"""The selector narrowed to this batch: an empty value matches the series without the label.

        >>> print(Batch("i", ("", "a.b"), ()).expr(Selector("up", ())))
        {__name__="up",i=~"|a\\.b"}
        """
        return selector.render((self.label, "=~", "|".join(escape_re2(v) for v in self.values)))


def listed_keys(listed: Iterable[dict[str, str]]) -> set[LabelKey]:
    """The distinct series of a listing (it may repeat one), as label keys."""
    return {tuple(sorted(labels.items())) for labels in listed}


def select_series(
    keys: set[LabelKey], keep: Callable[[dict[str, str]], bool] | None, max_series: int,
) -> tuple[list[LabelKey], int]:
    """The listed series (`listed_keys`) to fetch, in label order: those `keep` accepts (this shard's
    own), the first `max_series` of them; and how many more there were (dropped). Same choice as
    `GridSeries`."""
    if keep is not None:
        keys = {key for key in keys if keep(parse_labels(dict(key)))}
    entries = sorted_entries(keys)
    return [key for _, key in entries[:max_series]], max(0, len(entries) - max_series)


def pick_label(keys: Sequence[LabelKey]) -> str | None:
    """The label whose values split `keys` best: the smallest largest group of series sharing a value
    (those without the label are one group), then one every series has, then the first name.

    >>> pick_label([(("a", "1"), ("b", "x")), (("a", "2"), ("b", "x")), (("b", "y"),)])
    'a'
    """
    groups: dict[str, Counter[str]] = {}
    for key in keys:
        for name, value in key:
            groups.setdefault(name, Counter())[value] += 1
    usable = [name for name in groups if _LABEL_NAME.match(name)]

    def cost(name: str) -> tuple[int, bool, str]:
        missing = len(keys) - sum(groups[name].values())
        return max(max(groups[name].values()), missing), missing > 0, name

    return min(usable, key=cost, default=None)


MAX_REGEX_BYTES = 256 << 10
"""Characters a batch's regex holds at most: long label values (URLs, queries) would otherwise make
requests past the 10 MB form Prometheus reads (it then answers about a missing `start`)."""

MAX_BATCH_SERIES = 1000
"""Series a batch asks for at most, however short the range: a regex of thousands of values costs the
server its compilation and matching, and the fits wait for a whole batch to arrive."""


def plan_batches(keys: Sequence[LabelKey], size: int, listed: Sequence[LabelKey] | None = None) -> list[Batch]:
    """`keys` in batches that each return at most `size` series, each made of whole groups sharing the
    value of one label (`pick_label` over every `listed` series, default `keys`: what a query matches);
    a group that returns more than `size` by itself is a batch of its own.

    >>> [b.values for b in plan_batches([(("i", str(n)),) for n in range(5)], 2)]
    [('0', '1'), ('2', '3'), ('4',)]
    >>> listed = [(("i", str(n % 3)), ("x.y", str(n))) for n in range(9)]  # 3 series of each i...
    >>> [(b.values, b.matched) for b in plan_batches([listed[0], listed[1]], 4, listed)]  # ...1 wanted
    [(('0',), 3), (('1',), 3)]
    """
    listed = list(listed) if listed is not None else list(keys)
    label = pick_label(listed)
    if label is None:
        return []
    matched = Counter(dict(key).get(label, "") for key in listed)
    groups: dict[str, list[LabelKey]] = {}
    for key in keys:
        groups.setdefault(dict(key).get(label, ""), []).append(key)
    out: list[Batch] = []
    values: list[str] = []
    members: list[LabelKey] = []
    weight = length = 0
    for value in sorted(groups):
        grows = len(escape_re2(value)) + 1
        if members and (weight + matched[value] > size or length + grows > MAX_REGEX_BYTES):
            out.append(Batch(label, tuple(values), tuple(members), weight))
            values, members, weight, length = [], [], 0, 0
        values.append(value)
        members += groups[value]
        weight += matched[value]
        length += grows
    if members:
        out.append(Batch(label, tuple(values), tuple(members), weight))
    return out


@dataclass
class Batched:
    """What a fetch leaves besides the series it delivered (in batches or in time pieces)."""

    dropped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)  # labels of the series whose batch failed
    warnings: list[str] = field(default_factory=list)


async def query_in_batches(
    client: PrometheusClient, alias: str, selector: Selector, grid: GridSeries, max_series: int,
    deliver: Callable[[list[Series]], None], on_progress: Callable[[int, int], None] | None = None,
) -> Batched:
    """The series of `selector` on the range and step of `grid` (an empty one; its `keep` chooses this
    shard's series), listed, then fetched batch by batch, each batch's series handed to `deliver`
    (sorted by labels) once its whole range has arrived. Raises `SourceError` when the listing fails,
    or when every batch did."""
    listed = await client.list_series(selector.render(), grid.start - LOOKBACK, grid.end)
    every = listed_keys(listed)  # what a batch's regex may match, this shard's own series or not
    keys, dropped = select_series(every, grid.keep, max_series)
    plan = plan_requests(keys, len(grid.timestamps), client.source, list(every))
    progress = _Progress(on_progress, sum(len(split_range(grid.start, grid.end, grid.step, n)) for _, n in plan))
    result, errors = Batched(dropped), []
    held = asyncio.Semaphore(client.source.concurrency)  # batches asked for and not handed over yet
    handing = asyncio.Lock()  # one hand-over at a time, as `deliver` expects

    async def one(batch: Batch, points: int) -> None:
        async with held:
            await fetch_one(batch, points)

    async def fetch_one(batch: Batch, points: int) -> None:
        labels = [parse_labels(dict(key)) for key in batch.keys]
        into = GridSeries(grid.start, grid.end, grid.step, expected={tuple(sorted(x.items())) for x in labels})
        try:
            await client.query_range(batch.expr(selector), grid.start, grid.end, grid.step, progress, points, into)
        except SourceError as exc:
            errors.append(exc)
            result.failed += labels
            log.warning("baseline %s: a batch of %d series (by %s) failed; they keep their previous bands: %s",
                        alias, len(batch.keys), batch.label, exc)
            return
        result.warnings += [w for w in into.warnings if w not in result.warnings]
        series, _ = into.render(len(batch.keys))
        if series:  # in a thread: a hand-over that waits for the fits must not stall the answers under way
            async with handing:
                await asyncio.to_thread(deliver, series)

    await gather_or_cancel([one(batch, points) for batch, points in plan])
    if plan and len(errors) == len(plan):
        raise errors[0]
    return result


def plan_requests(keys: Sequence[LabelKey], points: int, source: Source,
                  listed: Sequence[LabelKey] | None = None) -> list[tuple[Batch, int]]:
    """The batches of `keys` for a range of `points` points, each with its points per request: as many
    series a batch (counting every `listed` series its query also matches) as requests of at most
    `max_points_per_request` points a series hold within `max_samples_per_request`; a batch of one
    large group is cut in time more finely."""
    per_series = min(points, source.max_points_per_request)
    size = min(MAX_BATCH_SERIES, max(1, source.max_samples_per_request // per_series))
    batches = plan_batches(keys, size, listed)
    return [(b, piece_points(max(b.matched, len(b.keys)), source.max_points_per_request,
                             source.max_samples_per_request)) for b in batches]


class _Progress:
    """Requests done out of `total` across every batch, for `on_progress(done, total)` (each batch's
    `query_range` reports its own pieces: (0, n) first, then (1, n), (2, n), ...)."""

    def __init__(self, on_progress: Callable[[int, int], None] | None, total: int):
        self.on_progress, self.total, self.done = on_progress, total, 0
        if on_progress is not None:
            on_progress(0, total)

    def __call__(self, count: int, _: int) -> None:
        if count and self.on_progress is not None:
            self.done += 1
            self.on_progress(self.done, self.total)
