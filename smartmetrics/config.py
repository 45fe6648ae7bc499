"""Typed configuration: YAML in, a validated `Config` or a `ConfigError` listing every problem by path.

Durations are written Prometheus-style (`5m`, `14d`) and held as seconds. Secrets are never written
in the file itself unless the user insists: each secret field has `_file` and `_env` twins.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from smartmetrics.engine.durations import format_duration, parse_duration
from smartmetrics.engine.promql_syntax import promql_error
from smartmetrics.engine.series import labels_key
from smartmetrics.engine.shards import ordinal, owner_of_key

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger


def _parse_config_duration(value: Any, info: ValidationInfo) -> float:
    """Seconds from `5m`; in a config file (`parse_config`) a bare number other than 0 is refused, since
    `for: 5` reads as five minutes to most people and as five seconds to `parse_duration`."""
    if (info.context or {}).get("file") and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and value != 0:
        raise ValueError(f"{value:g} has no unit: write {value:g}m for minutes or {value:g}s for seconds "
                         "(units: ms, s, m, h, d, w, y)")
    return parse_duration(value)


Duration = Annotated[
    float,
    BeforeValidator(_parse_config_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""Seconds, written in YAML as `30s`, `5m`, `14d` (a unit is required, except for 0)."""

SENSITIVITY_WORDS = ("low", "medium", "high")


def _check_expr(expr: str) -> str:
    if not expr.strip():
        raise ValueError("must not be empty")
    problem = promql_error(expr.strip())
    if problem is not None:
        raise ValueError(f"not valid PromQL: {problem}")
    return expr.strip()


PromQL = Annotated[str, AfterValidator(_check_expr)]
"""A PromQL expression: not blank, parseable (a syntax error is named with its column), surrounding
whitespace dropped."""


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one `path: message` line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret(value: str | None, file: str | None, env: str | None, what: str) -> str | None:
    """The secret given inline, in a file (trailing newline stripped) or in an environment variable."""
    given = [x for x in (value, file, env) if x is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of {what}, {what}_file, {what}_env")
    if file is not None:
        try:
            return Path(file).read_text().rstrip("\n")
        except OSError as exc:
            raise ValueError(f"{what}_file {file!r} cannot be read: {exc.strerror}") from None
    if env is not None:
        if env not in os.environ:
            raise ValueError(f"{what}_env: environment variable {env} is not set")
        return os.environ[env]
    return value


class BasicAuth(_Strict):
    username: str
    password: str | None = Field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _check_password(self) -> BasicAuth:
        self.resolved_password()
        return self

    def resolved_password(self) -> str:
        return _read_secret(self.password, self.password_file, self.password_env, "password") or ""


class ClientTLS(_Strict):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _check_files(self) -> ClientTLS:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name} {path!r} does not exist")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class HTTPEndpoint(_Strict):
    """An HTTP endpoint smartmetrics talks to: its URL, timeout, headers, auth and TLS (secrets as
    `BasicAuth` and the `bearer_token` twins)."""

    url: str
    timeout: Duration = 30.0
    headers: dict[str, str] = {}
    basic_auth: BasicAuth | None = None
    bearer_token: str | None = Field(default=None, repr=False)
    bearer_token_file: str | None = None
    bearer_token_env: str | None = None
    tls: ClientTLS = ClientTLS()

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f'url "{url}" must start with http:// or https://')
        return url.rstrip("/")

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, timeout: float) -> float:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        return timeout

    @model_validator(mode="after")
    def _check_auth(self) -> HTTPEndpoint:
        token = self.resolved_bearer_token()
        if token is not None and self.basic_auth is not None:
            raise ValueError("use basic_auth or a bearer token, not both")
        return self

    def resolved_bearer_token(self) -> str | None:
        return _read_secret(self.bearer_token, self.bearer_token_file, self.bearer_token_env, "bearer_token")


class Source(HTTPEndpoint):
    """A Prometheus-compatible HTTP API: Prometheus, Thanos, Mimir, Cortex, VictoriaMetrics."""

    concurrency: int = Field(default=4, ge=1, le=64)
    retries: int = Field(default=3, ge=0, le=10)
    max_points_per_request: int = Field(default=11000, ge=2, le=11000)
    max_samples_per_request: int = Field(default=250_000, ge=1000)
    compression: Literal["auto", "gzip", "none"] = "auto"
    """Whether answers come gzip-compressed. Compressing JSON costs the server about eight times the
    CPU of serving it uncompressed (measured on Prometheus 2.42), and the client a decompression, to
    save bandwidth a loopback connection does not need: `auto` asks for gzip except from a loopback
    host (localhost, 127.0.0.0/8, ::1)."""

    @model_validator(mode="after")
    def _check_compression(self) -> Source:
        if self.compression != "auto" and any(key.lower() == "accept-encoding" for key in self.headers):
            raise ValueError("compression and an Accept-Encoding header say the same thing twice: keep one")
        return self

    def gzip(self) -> bool:
        """Whether to ask this source for gzip-compressed answers."""
        if self.compression != "auto":
            return self.compression == "gzip"
        return not is_loopback(urlsplit(self.url).hostname or "")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, as in a URL) is this machine itself.

    >>> [is_loopback(h) for h in ("localhost.", "127.0.0.2", "[::1]", "0.0.0.0", "::ffff:127.0.0.1", "10.0.0.1")]
    [True, True, True, True, True, False]
    """
    name = host.lower().strip("[]").rstrip(".")
    if name in ("localhost", "localhost.localdomain", "ip6-localhost") or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or address.is_unspecified or bool(mapped and mapped.is_loopback)


def _interval_within(interval: float, shortest: int) -> float:
    """A polling interval of at least `shortest` seconds and at most a day, or the error saying so."""
    if not shortest <= interval <= 86400:
        raise ValueError(f"interval must be at least {shortest}s and at most 1d")
    return interval


class RemoteWrite(HTTPEndpoint):
    """A Prometheus remote-write receiver the bands are pushed to (`smartmetrics.adapters.remote_write`):
    Prometheus with `--web.enable-remote-write-receiver` (`/api/v1/write`), Mimir (`/api/v1/push`, with
    `X-Scope-OrgID` in `headers`), VictoriaMetrics (`/api/v1/write`), Thanos Receive."""

    interval: Duration = 30.0
    """Seconds between two pushes of every current band."""
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    """Samples per request."""
    retries: int = Field(default=3, ge=0, le=10)
    """Further attempts after a 5xx, a 429 or a connection failure (never after another 4xx)."""

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, interval: float) -> float:
        return _interval_within(interval, 1)


class Export(_Strict):
    """Where the bands go besides `/metrics` (scraping stays the default)."""

    remote_write: RemoteWrite | None = None


class Alert(_Strict):
    direction: Literal["both", "up", "down"] = "both"
    for_: Duration | None = Field(default=None, alias="for")
    """How long the score must stay above the threshold before the alert fires; unset: the
    sensitivity's (`smartmetrics.engine.firing.for_seconds`: 0 for medium and high, one step for low)."""
    severity: str = "warning"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    min_abs_deviation: float = Field(default=0.0, ge=0)
    min_rel_deviation: float = Field(default=0.0, ge=0)
    stuck: bool = True
    """Also alert when a series that normally changes at almost every step stops changing (a flatline
    inside the band); only series whose fit found such a rhythm take part."""
    sustained: bool = True
    """Also alert when the mean over a trailing window leaves the range such means normally keep
    (a sustained shift, a burst of errors); only series whose fit learned limits for it take part
    (curve types intermittent and noisy)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        """Refuse the labels the rules set themselves, rather than let them be overridden silently."""
        if "severity" in labels:
            raise ValueError(f"severity {labels.get('severity')!r} would be overridden by alert.severity; "
                             "set alert.severity instead and drop severity from alert.labels")
        if "baseline" in labels:
            raise ValueError(f"baseline {labels.get('baseline')!r} would be overridden by the baseline's alias, "
                             "which every alert carries as its baseline label; drop it from alert.labels")
        return labels


class Releases(_Strict):
    """Deploy markers: after each release the band is withdrawn for `settle`, then re-anchored on the
    level the series settled at (`smartmetrics.engine.releases`), instead of alerting until the next retrain."""

    expr: PromQL
    """PromQL that is non-zero while a release happens, e.g.
    `changes(kube_deployment_status_observed_generation{namespace="serving"}[5m]) > 0`; each run of
    non-zero points is one release, at its first point."""
    match: list[str] = []
    """Labels the marker series share with the baseline's series (e.g. [namespace, deployment]): a release
    concerns the series with the same values. Empty: every series of the baseline."""
    settle: Duration = 1800.0
    absorb: Literal["both", "up", "down"] = "both"
    """Which moves become the new normal: `down` for error rates and latencies (a release that makes
    them worse still alerts), `up`, or `both` (traffic, load)."""

    @field_validator("settle")
    @classmethod
    def _check_settle(cls, settle: float) -> float:
        return _within_a_day(settle, "settle")


class Follow(_Strict):
    """Follow a new level between retrains: once a series has stayed beyond one edge of its band for
    `after`, the band also covers that level until the next retrain (`smartmetrics.engine.follow`)."""

    after: Duration = 3600.0
    absorb: Literal["both", "up", "down"] = "both"
    """Which levels are followed: `down` for error rates and latencies (a rise keeps alerting until
    the next retrain), `up`, or `both` (traffic, load)."""

    @field_validator("after")
    @classmethod
    def _check_after(cls, after: float) -> float:
        return _within_a_day(after, "after", " (set follow: null to never follow)")


def _within_a_day(seconds: float, field: str, hint: str = "") -> float:
    """`seconds` if in (0, 1d]; else a ValueError naming `field` (pydantic adds its path)."""
    if not 0 < seconds <= 86400:
        raise ValueError(f"{field} must be more than 0s and at most 1d{hint}")
    return seconds


def _check_ahead(value: Any, info: ValidationInfo) -> str:
    """One `ahead` offset as written (`15m`), kept so that the exported `ahead` label reads the same;
    it must parse as a duration (with a unit in a config file) and be more than 0s."""
    seconds = _parse_config_duration(value, info)
    if seconds <= 0:
        raise ValueError("ahead must be more than 0s")
    return value.strip() if isinstance(value, str) else format_duration(seconds)


def _check_cron(cron: str) -> str:
    """A crontab line (`0 3 * * *`) that APScheduler's `CronTrigger.from_crontab` accepts, its day of
    week read as cron reads it (`cron_trigger`)."""
    try:
        cron_trigger(cron, "UTC")
    except ValueError as exc:
        raise ValueError(f'invalid cron expression "{cron}": {exc}') from None
    return cron


def cron_trigger(cron: str, zone: str) -> CronTrigger:
    """APScheduler's trigger for a crontab line on the clock of `zone`, the day of week as cron reads
    it (0 or 7: Sunday; `crontab_for_apscheduler`). Raises ValueError for a line it cannot read."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(crontab_for_apscheduler(cron), timezone=zone)


DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_for_apscheduler(cron: str) -> str:
    """A crontab line with its day-of-week field spelled as day names: APScheduler 3 reads 0 as Monday,
    cron as Sunday (agronholm/apscheduler#286, fixed only in 4.0), and both read names alike.

    >>> crontab_for_apscheduler("0 2 * * 0"), crontab_for_apscheduler("*/5 9-17 * * 1-5,7")
    ('0 2 * * sun', '*/5 9-17 * * mon,tue,wed,thu,fri,sun')
    >>> crontab_for_apscheduler("0 2 * * */2"), crontab_for_apscheduler("0 3 * * *")
    ('0 2 * * tue,thu,sat,sun', '0 3 * * *')
    """
    fields = cron.split()
    if len(fields) != 5 or fields[4] == "*":
        return cron
    days: set[int] = set()
    for item in fields[4].lower().split(","):
        span, _, every = item.partition("/")
        first, _, last = span.partition("-")
        lo = 0 if first == "*" else _day_number(first)
        hi = 6 if first == "*" else _day_number(last) if last else (lo if not every else 6)
        days |= {d % 7 for d in range(lo, hi + 1, int(every or 1))}
    return " ".join(fields[:4] + [",".join(DAY_NAMES[d] for d in sorted(days, key=lambda d: (d + 6) % 7))])


def _day_number(text: str) -> int:
    """A cron day of week (0-7 or a name) as 0 (Sunday) .. 7 (Sunday again)."""
    if text[:3] in DAY_NAMES:
        return DAY_NAMES.index(text[:3])
    if text.isdigit() and int(text) <= 7:
        return int(text)
    raise ValueError(f"day of week {text!r} is not 0-7 or a day name")


def _check_zone(name: str) -> str:
    """An IANA time zone name that zoneinfo knows (`Europe/Berlin`, `America/New_York`, `UTC`)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: expected an IANA name such as Europe/Berlin or UTC") from None
    return name


def _check_sensitivity(value: Any) -> str | float:
    if isinstance(value, str) and value in SENSITIVITY_WORDS:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    raise ValueError(f"expected low|medium|high or a number in (0,1), got {value!r}")


_UNIT = re.compile(r"^[A-Za-z0-9_.:/%()$ -]{1,64}$")


def _check_unit(value: Any) -> str:
    """A Grafana unit id (`s`, `bytes`, `percentunit`, `reqps`, `suffix:req`, ...), as the dashboards use it."""
    if isinstance(value, str) and _UNIT.match(value) and value.strip():
        return value
    raise ValueError(f"expected a Grafana unit id such as s, bytes, percentunit, reqps or suffix:req, got {value!r}")


class Holidays(_Strict):
    """Public holidays of a country (and subdivision) from the `holidays` package, plus extra dates:
    fitted like a weekend day, never as an incident (`smartmetrics.engine.calendars`)."""

    country: str | None = None
    """ISO 3166 code the `holidays` package knows: US, DE, CN, ..."""
    subdiv: str | None = None
    """A subdivision of the country: CA for California, BY for Bavaria, ..."""
    extra: list[date] = []
    """More dates (2026-12-24) that count as holidays."""

    @model_validator(mode="after")
    def _check_country(self) -> Holidays:
        if self.country is None:
            if self.subdiv is not None:
                raise ValueError(f"subdiv {self.subdiv!r} needs a country")
            return self
        import holidays  # the package loads every country's calendar: only for configs that name one

        known = holidays.list_supported_countries()
        if self.country not in known:
            raise ValueError(f"country {self.country!r}: not a country the holidays package knows "
                             "(an ISO 3166 code such as US, DE or CN)")
        subdivs = known[self.country]
        if self.subdiv is not None and self.subdiv not in subdivs:
            raise ValueError(f"subdiv {self.subdiv!r}: not a subdivision of {self.country} "
                             f"(one of {', '.join(subdivs) or 'none'})")
        return self


class Event(_Strict):
    """A planned window, given as `start`/`end`, as a `cron` with a `duration` (in the baseline's time
    zone), or as a PromQL `expr` that is non-zero while it lasts. During `maintenance` the band is
    withdrawn (no alert can fire); an `expected_change` widens it by `widen` on the `direction` side(s).
    Either way the window is left out of training (`smartmetrics.engine.calendars`)."""

    name: str = Field(min_length=1)
    kind: Literal["maintenance", "expected_change"] = "maintenance"
    start: datetime | None = None
    """RFC 3339 (`2026-03-01T02:00:00+01:00`); without an offset, UTC."""
    end: datetime | None = None
    cron: str | None = None
    """A crontab line (`0 2 * * 0`: Sundays at 02:00 in the baseline's time zone), with `duration`."""
    duration: Duration | None = None
    expr: PromQL | None = None
    """PromQL that is non-zero while the event lasts (like `releases.expr`): any of its series counts."""
    widen: float | None = Field(default=None, gt=1, le=100, allow_inf_nan=False)
    """An expected change's band width as a multiple of the usual one (default 2)."""
    direction: Literal["up", "down", "both"] | None = None
    """Which edge an expected change moves: `up`, `down` or `both` (default)."""

    @field_validator("start", "end")
    @classmethod
    def _utc_unless_said(cls, moment: datetime | None) -> datetime | None:
        return moment if moment is None or moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)

    @field_validator("cron")
    @classmethod
    def _check_event_cron(cls, cron: str) -> str:
        return _check_cron(cron)

    @model_validator(mode="after")
    def _check_when(self) -> Event:
        given = [f for f in ("start", "cron", "expr") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(f"event {self.name!r}: give exactly one of start (with end), cron (with duration) "
                             f"or expr{' (given: ' + ', '.join(given) + ')' if given else ''}")
        for first, second in (("start", "end"), ("cron", "duration")):
            if getattr(self, first) is not None and getattr(self, second) is None:
                raise ValueError(f"event {self.name!r}: {first} needs {second}")
            if getattr(self, first) is None and getattr(self, second) is not None:
                raise ValueError(f"event {self.name!r}: {second} goes with {first}")
        if self.start is not None and self.end <= self.start:  # type: ignore[operator]
            raise ValueError(f"event {self.name!r}: end must be after start")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"event {self.name!r}: duration must be more than 0s")
        if self.kind != "expected_change":
            for knob in ("widen", "direction"):
                if getattr(self, knob) is not None:
                    raise ValueError(f"event {self.name!r}: {knob} is only for kind expected_change")
        return self

    def widening(self) -> tuple[float, str]:
        """An expected change's (factor, direction) with the defaults filled in."""
        return (self.widen or 2.0, self.direction or "both")


class Calendar(_Strict):
    """What the calendar says about a baseline's days."""

    holidays: Holidays | None = None
    events: list[Event] = []

    @field_validator("events")
    @classmethod
    def _check_names(cls, events: list[Event]) -> list[Event]:
        names = [e.name for e in events]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"event names must differ (the dashboards and metrics tell them apart): {', '.join(twice)}")
        return events


CURVE_TYPES = (
    "auto", "seasonal", "stable", "trending", "intermittent", "level_shift", "noisy", "regime", "constant",
)


class Baseline(_Strict):
    """One PromQL expression whose every series gets its own band; the key becomes the `baseline` label."""

    source: str | None = None
    expr: PromQL
    step: Duration = 300.0
    history: Duration = 14 * 86400.0
    min_history: Duration = 86400.0
    """How much history (first to last point) a series needs before it gets a band: until then it is
    learning (no band, no alert; the stored fit says until when). Under a day, the band is refitted
    each time the series' history doubles, until it has a day (or half the `history`). At most
    `history` (the default day becomes the history where that is shorter)."""
    horizon: Duration = 86400.0
    sensitivity: Annotated[str | float, BeforeValidator(_check_sensitivity)] = "medium"
    curve_type: Literal[CURVE_TYPES] = "auto"  # type: ignore[valid-type]
    models: list[str] | None = None
    alert: Alert = Alert()
    max_series: int = Field(default=1000, ge=1)
    releases: Releases | None = None
    follow: Follow | None = Follow()
    unit: Annotated[str, BeforeValidator(_check_unit)] | None = None
    """The Grafana unit of the dashboards' value axis; unset: read from the metric name's suffix
    (`_seconds`, `_bytes`, `_ratio`, ... as Prometheus names them; `smartmetrics.render.units`)."""
    range: tuple[float | None, float | None] | None = None
    """The values the series can take, `[lo, hi]` (either may be null); the band never leaves it.
    Unset: 0 as the floor of a history that never went below 0, and 1 (or 100) as the ceiling of
    one whose alias, expr or metric name says ratio, utilisation or percent (`smartmetrics.engine.ranges`)."""
    timezone: Annotated[str, AfterValidator(_check_zone)] = "UTC"
    """The IANA time zone whose clock the series follows: daily and weekly profiles are learned and
    predicted in local time, so a daylight-saving switch moves them with the clock."""
    calendar: Calendar | None = None
    """Holidays of the series' days; unset: the top-level `calendar`, if any."""
    ahead: list[Annotated[str, BeforeValidator(_check_ahead)]] = []
    """Offsets (`[15m, 1h]`) at which the forecast is also exported ahead of now, for autoscaling
    (`smartmetrics_yhat_ahead{ahead="15m"}`); each at most the horizon, the label spelled as written."""

    @field_validator("ahead")
    @classmethod
    def _check_ahead_within_horizon(cls, ahead: list[str], info: ValidationInfo) -> list[str]:
        horizon, seen = info.data.get("horizon"), {}
        for text in ahead:
            seconds = parse_duration(text)
            if horizon is not None and seconds > horizon:
                raise ValueError(f"{text} is longer than the horizon ({format_duration(horizon)}): "
                                 "the forecast table does not reach it")
            if seconds in seen:
                raise ValueError(f"{text} is the same as {seen[seconds]}")
            seen[seconds] = text
        return ahead

    def ahead_offsets(self) -> tuple[tuple[str, float], ...]:
        """(label as written, seconds) for each `ahead` offset."""
        return tuple((text, parse_duration(text)) for text in self.ahead)

    @model_validator(mode="after")
    def _check_grid(self) -> Baseline:
        if self.step <= 0:
            raise ValueError("step must be positive")
        if self.history < 2 * self.step:
            raise ValueError("history must cover at least two steps")
        if self.horizon < self.step:
            raise ValueError("horizon must be at least one step")
        if self.min_history < 0 or ("min_history" in self.model_fields_set and self.min_history > self.history):
            raise ValueError(f"min_history ({format_duration(self.min_history)}) must be between 0 and the "
                             f"history ({format_duration(self.history)})")
        if self.range is not None:
            lo, hi = self.range
            if any(v is not None and not math.isfinite(v) for v in self.range):
                raise ValueError("range: both ends must be finite numbers or null")
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"range: the lower end {lo:g} must be below the upper end {hi:g}")
        return self


class Schedule(_Strict):
    retrain: str = "0 3 * * *"
    jitter: Duration = 600.0
    discover: Duration = 300.0
    stale_after: Duration = 3600.0

    @field_validator("retrain")
    @classmethod
    def _check_retrain_cron(cls, cron: str) -> str:
        return _check_cron(cron)


class Store(_Strict):
    path: str = "models/"


class ServerTLS(_Strict):
    cert_file: str
    key_file: str


class Server(_Strict):
    listen: str = "0.0.0.0:9877"
    basic_auth: BasicAuth | None = None
    tls: ServerTLS | None = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, listen: str) -> str:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'listen "{listen}" must be host:port, e.g. 0.0.0.0:9877')
        return listen


class Sharding(_Strict):
    """This daemon's share of every baseline's series (`engine.shards`): `shard` of `shards`. `shard:
    auto` takes the ordinal at the end of the host name (a StatefulSet pod `smartmetrics-2` is shard 2)."""

    shard: int = Field(default=0, ge=0)
    shards: int = Field(default=1, ge=1)
    by: Literal["series", "baseline"] = "series"  # what is hashed to a shard: each series, or whole baselines

    @field_validator("shard", mode="before")
    @classmethod
    def _resolve_auto(cls, shard: Any) -> Any:
        if shard != "auto":
            return shard
        host = os.environ.get("HOSTNAME") or socket.gethostname()
        found = ordinal(host)
        if found is None:
            raise ValueError(f'auto needs a host name ending in -<ordinal> (a StatefulSet pod), not "{host}"; '
                             "give the shard number instead")
        return found

    @model_validator(mode="after")
    def _check_shard(self) -> Sharding:
        if self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} must be below shards {self.shards}")
        return self

    def owns(self, alias: str, labels: dict[str, str]) -> bool:
        """Whether this daemon fits, stores and exports the series with `labels` of baseline `alias`."""
        return self.owns_key(alias, labels_key(labels))

    def owns_key(self, alias: str, key: str) -> bool:
        """`owns` for a series given by its labels key (`engine.series.labels_key`)."""
        if self.shards == 1 or self.by == "baseline":
            return self.owns_baseline(alias)
        return owner_of_key(alias, key, self.shards) == self.shard

    def owns_baseline(self, alias: str) -> bool:
        """Whether any series of baseline `alias` can be this daemon's (all of them, `by: baseline`)."""
        return self.shards == 1 or self.by == "series" or owner_of_key(alias, "", self.shards) == self.shard


class Cluster(_Strict):
    dask: str | None = None  # the scheduler's address, e.g. tcp://scheduler:8786; unset: local processes
    timeout: Duration = 30.0  # seconds to reach the scheduler

    @field_validator("dask")
    @classmethod
    def _check_dask(cls, address: str | None) -> str | None:
        if address is not None and not re.fullmatch(r"(tcp|tls|inproc|ucx|ws|wss)://\S+", address):
            raise ValueError(f'"{address}" is not a Dask scheduler address (e.g. tcp://scheduler:8786)')
        return address


class Alertmanager(HTTPEndpoint):
    """An Alertmanager's API (`GET /api/v2/silences`), with the auth and TLS it asks for."""


class Feedback(_Strict):
    """On-call's feedback besides `smartmetrics feedback` and its API (`smartmetrics.app.alerts`)."""

    silences_as_noise: bool = False
    """A recorded alert silenced in Alertmanager by a silence created after it started counts as
    `noise` (an explicit `real` or `noise` is never overridden); needs `alertmanager`."""
    alertmanager: Alertmanager | None = None
    """Where the silences are read from, every `interval` and before each retrain."""
    interval: Duration = 300.0

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, interval: float) -> float:
        return _interval_within(interval, 10)

    @model_validator(mode="after")
    def _check_alertmanager(self) -> Feedback:
        if self.silences_as_noise and self.alertmanager is None:
            raise ValueError("silences_as_noise needs alertmanager: {url: http://alertmanager:9093}")
        return self


class Config(_Strict):
    sources: dict[str, Source]
    baselines: dict[str, Baseline]
    schedule: Schedule = Schedule()
    store: Store = Store()
    server: Server = Server()
    sharding: Sharding = Sharding()
    cluster: Cluster = Cluster()
    export: Export | None = None
    feedback: Feedback | None = None
    calendar: Calendar | None = None
    """The calendar of every baseline that has none of its own."""

    @model_validator(mode="after")
    def _default_calendar(self) -> Config:
        """Give the top-level calendar to the baselines without one (so each baseline says all of its fit)."""
        if self.calendar is not None:
            resolved = {alias: b if b.calendar is not None else b.model_copy(update={"calendar": self.calendar})
                        for alias, b in self.baselines.items()}
            object.__setattr__(self, "baselines", resolved)  # frozen: set once, while validating
        return self

    @model_validator(mode="after")
    def _check_sources(self) -> Config:
        if not self.sources:
            raise ValueError("sources: at least one source is needed")
        known = ", ".join(sorted(self.sources))
        problems = []
        for alias, baseline in self.baselines.items():
            if baseline.source is None and len(self.sources) > 1:
                problems.append(
                    f"baselines.{alias}.source: required when more than one source is configured "
                    f"(one of {known})"
                )
            elif baseline.source is not None and baseline.source not in self.sources:
                problems.append(
                    f'baselines.{alias}.source: unknown source "{baseline.source}" (configured: {known})'
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def own_share(self) -> Config:
        """This config with only the baselines this daemon has a share of (all, unless `sharding.by:
        baseline`, where each baseline is one shard's whole and the others never fetch it)."""
        owned = {a: b for a, b in self.baselines.items() if self.sharding.owns_baseline(a)}
        return self if len(owned) == len(self.baselines) else self.model_copy(update={"baselines": owned})

    def source_for(self, alias: str) -> tuple[str, Source]:
        """The (name, Source) a baseline reads from."""
        name = self.baselines[alias].source or next(iter(self.sources))
        return name, self.sources[name]


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
}


def _format_error(err: dict[str, Any]) -> list[str]:
    """`path: message` lines for one pydantic error; model-level checks may report several."""
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = _MESSAGES.get(err["type"], err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "literal_error":
        msg = f"{msg}, got {err['input']!r}"
    return [f"{loc}: {line}" if loc else line for line in msg.splitlines()]


def parse_config(data: Any, source: str = "<config>") -> Config:
    """A `Config` from already-parsed YAML data, or a `ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["top level must be a mapping with sources and baselines"])
    try:
        return Config.model_validate(data, context={"file": True})
    except ValidationError as exc:
        problems = [line for e in exc.errors() for line in _format_error(e)]  # type: ignore[arg-type]
        raise ConfigError(source, problems) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), [f"{where}not valid YAML: {problem}"]) from None
    return parse_config(data, str(path))


_REDACT = {"password", "bearer_token"}


def redact_url(url: str) -> str:
    """`url` with the password of its user info hidden, for logs, errors and printed configs.

    >>> redact_url("https://me:s3cret@prom.example:9090/x"), redact_url("http://prom:9090")
    ('https://me:<redacted>@prom.example:9090/x', 'http://prom:9090')
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:<redacted>@{host}"))


def render_config(config: Config) -> str:
    """The resolved config as YAML, with defaults filled in and inline secrets redacted."""

    def redact(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: ("<redacted>" if k in _REDACT and v is not None else redact(v))
                for k, v in node.items()
                if v is not None
            }
        if isinstance(node, list):
            return [redact(v) for v in node]
        return node

    data = redact(config.model_dump(mode="json", by_alias=True))
    endpoints = [*data.get("sources", {}).values(), (data.get("export") or {}).get("remote_write"),
                 (data.get("feedback") or {}).get("alertmanager")]
    for endpoint in filter(None, endpoints):  # tokens travel in headers and URLs too
        endpoint["url"] = redact_url(endpoint["url"])
        endpoint["headers"] = {k: "<redacted>" for k in endpoint.get("headers", {})}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
