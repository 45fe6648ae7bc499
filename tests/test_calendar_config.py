"""Calendar config (issue 25): time zones, holidays and maintenance windows, validated by path and
turned into the fit's settings."""

from __future__ import annotations

import pytest

from smartmetrics.config import ConfigError, parse_config
from smartmetrics.settings import fit_fingerprint, fit_settings, zone_transitions

SOURCES = {"prom": {"url": "http://localhost:9090"}}


def baseline(**fields: object):
    return parse_config({"sources": SOURCES, "baselines": {"qps": {"expr": "up", **fields}}}).baselines["qps"]


def problems(**fields: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        baseline(**fields)
    return info.value.problems


def test_a_time_zone_is_an_iana_name_and_utc_by_default() -> None:
    assert baseline().timezone == "UTC" and fit_settings(baseline()).local_time == ()
    assert fit_settings(baseline(timezone="Europe/Berlin")).local_time == zone_transitions("Europe/Berlin")
    for bad in ("Europe/Berln", "CEST+2", "../etc/passwd"):
        assert problems(timezone=bad) == [f"baselines.qps.timezone: unknown time zone {bad!r}: expected an IANA "
                                          "name such as Europe/Berlin or UTC"]


def test_a_time_zone_refits_and_the_default_keeps_the_old_fingerprint() -> None:
    plain, utc, berlin = baseline(), baseline(timezone="UTC"), baseline(timezone="Europe/Berlin")
    assert fit_fingerprint(plain) == fit_fingerprint(utc) != fit_fingerprint(berlin)
    assert fit_fingerprint(plain) == "70bf8c045fb0fa4c"  # as before time zones: no refit on upgrade
