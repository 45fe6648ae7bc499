"""Property-based fuzzing of every endpoint of the daemon's HTTP layer (issue 20): whatever the
path, parameters and Authorization header, the answer is never a server error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartmetrics.adapters.server import route

pytestmark = pytest.mark.slow

PATHS = ("/metrics", "/-/healthy", "/-/ready", "/api/v1/baselines", "/api/v1/baselines/rate/series",
         "/api/v1/baselines/nope/series", "/", "/api/v1/baselines/rate%2F..%2Fx/series")
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str))
times = st.one_of(numbers, st.datetimes().map(lambda d: d.isoformat() + "Z"), st.text(max_size=30))
matchers = st.one_of(
    st.text(max_size=60),
    st.builds(lambda name, op, value: f'{{{name}{op}"{value}"}}', st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
              st.sampled_from(["=", "!=", "=~", "!~"]), st.text(max_size=20).map(lambda v: v.replace('"', ""))),
)
queries = st.fixed_dictionaries({}, optional={"start": times, "end": times, "match": matchers,
                                              st.text(max_size=5): st.text(max_size=10)})


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    import yaml

    from smartmetrics.adapters.source import FetchResult
    from smartmetrics.app.daemon import Daemon
    from smartmetrics.app.promlocal import free_port
    from smartmetrics.engine.series import Series
    from smartmetrics.evaluation.synth import make_series

    root: Path = tmp_path_factory.mktemp("fuzz")
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump({
        "sources": {"prom": {"url": "http://127.0.0.1:9"}},
        "baselines": {"rate": {"expr": "sm_rate", "step": "5m", "history": "3d"}},
        "store": {"path": str(root / "models")}, "server": {"listen": f"127.0.0.1:{free_port()}"},
    }))
    history = []
    for n, instance in enumerate("abc"):
        s = make_series("seasonal", days=3, seed=n).series
        history.append(Series({"instance": instance}, s.timestamps, s.values, s.step))
    app = Daemon(str(config), workers=1)
    app._pool.close()
    app._pool = None
    app.load()
    app.fetch = lambda config, alias, end=None, **_: FetchResult(alias=alias, series=history, dropped=0, requests=1,
                                                                  points=0, seconds=0.0)
    app.retrain()
    assert len(app.states["rate"].series) == 3
    yield app


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
@given(path=st.one_of(st.sampled_from(PATHS), st.text(max_size=40).map(lambda p: "/" + p)), query=queries)
def test_no_request_gets_a_server_error(daemon, path: str, query: dict) -> None:
    assert route(daemon, path, query).status < 500
