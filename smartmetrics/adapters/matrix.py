"""Pure handling of Prometheus `query_range` (and `series`) answers: split a range, parse, merge,
relabel, grid.

No I/O here; `smartmetrics.adapters.client` does the requests and `smartmetrics.adapters.source`
re-exports these names.
"""

from __future__ import annotations

import gc
import itertools
import json
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from smartmetrics.engine.series import Series, place_on_grid

LabelKey = tuple[tuple[str, str], ...]


class ResponseError(ValueError):
    """A response body that is not a usable query result; `retryable` if it looks cut short."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class RawSeries:
    """One series as Prometheus returned it: its full metric labels and its samples."""

    metric: dict[str, str]
    times: np.ndarray
    values: np.ndarray


@dataclass
class Matrix:
    """The series and the warnings of one or more `query_range` responses."""

    series: list[RawSeries]
    warnings: list[str] = field(default_factory=list)


MAX_ABS = 1e30  # beyond any counter, byte count or latency: a value this large is garbage, read as a gap


def piece_points(series: int, max_points: int, max_samples: int) -> int:
    """Points per series in one request: at most `max_points`, and at most `max_samples` over all the
    `series` the query returns (never fewer than 2, so a piece always moves the range forward).

    >>> piece_points(10, 11000, 250_000), piece_points(1000, 11000, 250_000), piece_points(10**6, 11000, 250_000)
    (11000, 250, 2)
    """
    return max(2, min(max_points, max_samples // max(series, 1)))


def split_range(start: int, end: int, step: int, max_points: int) -> list[tuple[int, int]]:
    """Consecutive `(start, end)` chunks on the step grid, each with at most `max_points` points.

    >>> split_range(0, 100, 10, 4)
    [(0, 30), (40, 70), (80, 100)]
    >>> split_range(0, 0, 60, 11000)
    [(0, 0)]
    """
    if step <= 0 or max_points < 1 or end < start:
        raise ValueError(f"bad range: start={start} end={end} step={step} max_points={max_points}")
    span = (max_points - 1) * step
    chunks, lo = [], start
    while lo <= end:
        hi = min(lo + span, end)
        chunks.append((lo, hi))
        lo = hi + step
    return chunks


class _Pairs(msgspec.Struct):
    metric: dict[str, str]
    values: list[tuple[float, float]]


class _MatrixData(msgspec.Struct):
    resultType: str
    result: list[_Pairs]


class _MatrixAnswer(msgspec.Struct):
    status: str
    data: _MatrixData
    warnings: Any = None


_MATRIX = msgspec.json.Decoder(_MatrixAnswer, strict=False)
"""A usable answer straight into typed fields: `strict=False` reads the sample strings ("1.5", "NaN",
"Inf", "-Inf") as floats without a Python object per token; three times faster than `json.loads`."""


def parse_matrix(body: bytes | str) -> Matrix:
    """The series and warnings of a `query_range` response body, or a `ResponseError`.

    >>> m = parse_matrix('{"status":"success","data":{"resultType":"matrix","result":'
    ...                  '[{"metric":{"job":"a"},"values":[[60,"1"],[120,"NaN"],[180,"+Inf"]]}]}}')
    >>> m.series[0].metric, m.series[0].values.tolist()
    ({'job': 'a'}, [1.0, nan, nan])
    """
    with _gc_paused():
        fast = _parse_typed(body)
        return fast if fast is not None else _parse_doc(_load_json(body))


def _load_json(body: bytes | str) -> Any:
    """The decoded body; a retryable `ResponseError` when it is not JSON (an answer cut short, a proxy's page)."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResponseError(f"invalid JSON in response ({exc})", retryable=True) from None


def parse_series_list(body: bytes | str) -> tuple[list[dict[str, str]], list[str]]:
    """The label sets of a `/api/v1/series` answer and its warnings (a partial answer of Thanos or
    Mimir says so there), or a `ResponseError`.

    >>> parse_series_list('{"status":"success","data":[{"__name__":"up","job":"a"}],"warnings":["partial"]}')
    ([{'__name__': 'up', 'job': 'a'}], ['partial'])
    """
    doc = _load_json(body)
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise ResponseError(parse_error_text(doc) or "response status is not success")
    data = doc.get("data") or []
    if not isinstance(data, list) or not all(isinstance(labels, dict) for labels in data):
        raise ResponseError("malformed response: 'data' is not a list of label sets")
    warnings = doc.get("warnings") or []
    return ([{str(k): str(v) for k, v in labels.items()} for labels in data],
            [str(w) for w in warnings] if isinstance(warnings, list) else [str(warnings)])


def _parse_typed(body: bytes | str) -> Matrix | None:
    """The matrix of a well-formed successful answer, or None for anything else (`_parse_doc` then
    says what is wrong, exactly as before there was a fast path)."""
    raw = body.encode() if isinstance(body, str) else body
    if b',"+Inf"]' in raw:  # the one sample string msgspec does not read (a label's "+Inf", le, is never before ])
        raw = raw.replace(b',"+Inf"]', b',"Inf"]')
    try:
        answer = _MATRIX.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # not JSON, another shape, bad UTF-8: the slow path says which
        return None
    if answer.status != "success" or answer.data.resultType != "matrix":
        return None
    series = [_pairs_series(item) for item in answer.data.result]
    warnings = answer.warnings or []
    return Matrix(series, [str(w) for w in warnings] if isinstance(warnings, list) else [str(warnings)])


def _pairs_series(item: _Pairs) -> RawSeries:
    """One decoded series as arrays, values no metric can mean as gaps (as `_parse_one`)."""
    flat = np.fromiter(itertools.chain.from_iterable(item.values), dtype=np.float64, count=2 * len(item.values))
    return RawSeries(item.metric, flat[0::2].copy(), _garbage_as_gaps(flat[1::2].copy()))


def _parse_doc(doc: Any) -> Matrix:
    """The `Matrix` in a decoded response document."""
    if not isinstance(doc, dict):
        raise ResponseError("response is not a JSON object")
    if doc.get("status") != "success":
        raise ResponseError(parse_error_text(doc) or "response status is not success")
    data = doc.get("data") or {}
    if not isinstance(data, dict):
        raise ResponseError(f"malformed response: 'data' is a {type(data).__name__}, not an object")
    if data.get("resultType") != "matrix":
        raise ResponseError(f"expected a matrix result, got {data.get('resultType')!r}")
    result = data.get("result") or []
    if not isinstance(result, list):
        raise ResponseError(f"malformed response: 'result' is a {type(result).__name__}, not a list")
    try:
        series = [_parse_one(item) for item in result]
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ResponseError(f"malformed matrix in response ({exc!r})") from None
    warnings = doc.get("warnings") or []
    return Matrix(series, [str(w) for w in warnings] if isinstance(warnings, list) else [str(warnings)])


_gc_lock = threading.Lock()
_gc_state = {"depth": 0, "was_enabled": False}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, re-entrantly and across threads.

    Decoding a large matrix creates one small tuple (or list) per sample; none can form a cycle, yet
    the collector would rescan them again and again: 5-10 times slower with `json.loads`, about 10%
    with msgspec in a process that holds a few million objects.
    """
    with _gc_lock:
        if _gc_state["depth"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["depth"] -= 1
            if _gc_state["depth"] == 0 and _gc_state["was_enabled"]:
                gc.enable()


def _parse_one(item: dict[str, Any]) -> RawSeries:
    """One matrix entry; values arrive as strings (`"1.5"`, `"NaN"`, `"+Inf"`). Values no metric can
    mean (not finite, or beyond `MAX_ABS`) become gaps: one exporter's garbage must not become a band.

    >>> _parse_one({"metric": {"a": "b"}, "values": [[60, "1"], [120, "+Inf"], [180, "1e300"]]}).values.tolist()
    [1.0, nan, nan]
    """
    pairs, metric = item["values"], item["metric"]
    if not isinstance(pairs, list) or not isinstance(metric, dict):
        raise TypeError("a series needs a 'metric' object and a 'values' list")
    times = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs))
    values = _garbage_as_gaps(np.array([p[1] for p in pairs], dtype=np.float64))
    return RawSeries({str(k): str(v) for k, v in metric.items()}, times, values)


def _garbage_as_gaps(values: np.ndarray) -> np.ndarray:
    """`values` (changed in place) with NaN where no metric can be: not finite, or beyond `MAX_ABS`."""
    with np.errstate(invalid="ignore"):
        values[~(np.abs(values) <= MAX_ABS)] = np.nan
    return values


def parse_error_text(doc: Any) -> str | None:
    """Prometheus' own explanation in an error body, e.g. `Prometheus rejected the query (bad_data): ...`.

    >>> parse_error_text({"status": "error", "errorType": "bad_data", "error": "1:4: parse error"})
    'Prometheus rejected the query (bad_data): 1:4: parse error'
    """
    if isinstance(doc, (bytes, str)):
        try:
            doc = json.loads(doc)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    if not isinstance(doc, dict) or "error" not in doc:
        return None
    return f"Prometheus rejected the query ({doc.get('errorType', 'error')}): {doc['error']}"


def parse_labels(metric: dict[str, str]) -> dict[str, str]:
    """Series labels as smartmetrics exports them: no `__name__`, `baseline` renamed `exported_baseline`.

    >>> parse_labels({"__name__": "up", "baseline": "x", "job": "a"})
    {'job': 'a', 'exported_baseline': 'x'}
    """
    labels = {k: v for k, v in metric.items() if k not in ("__name__", "baseline")}
    if "baseline" in metric:
        name = "exported_baseline"
        while name in labels:
            name = "exported_" + name
        labels[name] = metric["baseline"]
    return labels


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header given in seconds (HTTP dates are ignored).

    >>> parse_retry_after("2"), parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")
    (2.0, None)
    """
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def merge_matrices(parts: Iterable[Matrix]) -> Matrix:
    """One matrix from the chunks of a range: samples of the same metric joined, warnings de-duplicated."""
    times: dict[LabelKey, list[np.ndarray]] = {}
    values: dict[LabelKey, list[np.ndarray]] = {}
    warnings: list[str] = []
    for part in parts:
        warnings += [w for w in part.warnings if w not in warnings]
        for s in part.series:
            key = tuple(sorted(s.metric.items()))
            times.setdefault(key, []).append(s.times)
            values.setdefault(key, []).append(s.values)
    merged = [RawSeries(dict(k), np.concatenate(times[k]), np.concatenate(values[k])) for k in times]
    return Matrix(merged, warnings)


class GridSeries:
    """A baseline's series laid on their grid as the pieces of a range arrive, each piece dropped once
    placed: memory holds one float array per series (and one shared timestamp grid), never the
    pieces' samples side by side; `render_series` is the same for one whole matrix.

    >>> grid = GridSeries(0, 120, 60)
    >>> grid.add(Matrix([RawSeries({"job": "a"}, np.array([0.0, 60.0]), np.array([1.0, 2.0]))], ["w"]))
    >>> grid.add(Matrix([RawSeries({"job": "a"}, np.array([120.0]), np.array([3.0]))], ["w"]))
    >>> [s.values.tolist() for s in grid.render(10)[0]], grid.warnings
    ([[1.0, 2.0, 3.0]], ['w'])
    """

    def __init__(self, start: int, end: int, step: int, keep: Callable[[dict[str, str]], bool] | None = None,
                 expected: Collection[LabelKey] | None = None):
        self.start, self.end, self.step = start, end, step
        self.timestamps = start + step * np.arange((end - start) // step + 1, dtype=np.int64)
        self.values: dict[LabelKey, np.ndarray] = {}
        self.passed: set[LabelKey] = set()
        self.keep, self.expected = keep, expected
        self.warnings: list[str] = []

    def add(self, piece: Matrix) -> None:
        """Place one piece's samples as `build_grid_series` would (`place_on_grid`); the samples of
        series that `keep` refuses (another shard's), or whose labels (as `parse_labels` gives them:
        a source may drop the metric name) are not `expected` (a batch's listed series: not one that
        appeared since, nor one of another batch), are passed over."""
        self.warnings += [w for w in piece.warnings if w not in self.warnings]
        n = len(self.timestamps)
        for raw in piece.series:
            key = tuple(sorted(raw.metric.items()))
            row = self.values.get(key)
            if row is None:
                if key in self.passed:
                    continue
                labels = parse_labels(raw.metric)
                if (self.expected is not None and tuple(sorted(labels.items())) not in self.expected) or (
                        self.keep is not None and not self.keep(labels)):
                    self.passed.add(key)
                    continue
                row = self.values[key] = np.full(n, np.nan)
            place_on_grid(row, raw.times, raw.values, self.start, self.step)

    @property
    def seen(self) -> int:
        """Series the source returned so far, kept or passed over (what a request's size depends on)."""
        return len(self.values) + len(self.passed)

    def render(self, max_series: int) -> tuple[list[Series], int]:
        """Grid series sorted by labels, the first `max_series` kept; also how many were dropped."""
        entries = sorted_entries(self.values)
        kept = entries[:max_series]
        series = [Series(labels=labels, timestamps=self.timestamps, values=self.values[key], step=self.step,
                         name=dict(key).get("__name__", "")) for labels, key in kept]
        return series, len(entries) - len(kept)


def sorted_entries(keys: Iterable[LabelKey]) -> list[tuple[dict[str, str], LabelKey]]:
    """(labels as exported, key) of each series, in the order of their labels: the order `max_series`
    keeps the first of. Two series whose labels differ only by the metric name are a `ResponseError`.

    >>> sorted_entries([(("__name__", "up"), ("job", "b")), (("job", "a"),)])
    [({'job': 'a'}, (('job', 'a'),)), ({'job': 'b'}, (('__name__', 'up'), ('job', 'b')))]
    """
    entries = sorted(((parse_labels(dict(key)), key) for key in keys), key=lambda e: sorted(e[0].items()))
    for (a, first), (b, second) in zip(entries, entries[1:]):
        if a == b:
            names = (dict(first).get("__name__", ""), dict(second).get("__name__", ""))
            raise ResponseError(f"series {names[0]} and {names[1]} have the same labels once the metric name "
                                f"is dropped ({a}); select one metric or aggregate in expr")
    return entries


def render_series(matrix: Matrix, start: int, end: int, step: int, max_series: int) -> tuple[list[Series], int]:
    """Grid series sorted by labels, the first `max_series` kept; also how many were dropped."""
    grid = GridSeries(start, end, step)
    grid.add(matrix)
    return grid.render(max_series)
