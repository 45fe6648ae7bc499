# smartmetrics developer entry points. `make demo` and `make test` are the README's quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo notebook test test-fast lint bench bench-fetch bench-classify bench-quality bench-ceiling bench-speed bench-daemon bench-tuning bench-faults bench-servers bench-retrain bench-scale bench-cluster bench-dst bench-autoscale bench-feedback clean

# the real servers the tests start: Prometheus (with promtool), Alertmanager, node_exporter (Debian's)
SERVERS := prometheus promtool prometheus-alertmanager prometheus-node-exporter

$(STAMP): pyproject.toml
	@missing=$$(for b in $(SERVERS); do command -v $$b >/dev/null || echo $$b; done); [ -z "$$missing" ] || { \
	  echo "not found: $$missing; installing Debian's prometheus, prometheus-alertmanager, prometheus-node-exporter"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager prometheus-node-exporter; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/smartmetrics demo

# the tuning notebook, run headless with nbclient (no Jupyter, no nbconvert): the executed copy, with its
# tables and figures, in out/notebook/; `make notebook FIGURES=DIR` also writes the figures as PNGs into DIR
notebook: $(STAMP)
	$(BIN)/python -m smartmetrics.app.notebook --out out/notebook $(if $(FIGURES),--figures $(FIGURES))

# pytest exits 5 when it collected nothing: that is a failure, not a pass.
test: $(STAMP)
	$(BIN)/pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -x -q

lint: $(STAMP)
	$(BIN)/hadolint Dockerfile
	$(BIN)/lint-imports

bench-fetch: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.fetch

bench-classify: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.classify --nab ../shared/bench/nab/data

bench-quality: $(STAMP)
	$(BIN)/smartmetrics evaluate --nab ../shared/bench/nab --synthetic 300

# how many false alerts fall on the corpus's unlabelled deploys and operator changes, and the F1 it allows
bench-ceiling: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.ceiling --synthetic 300 --seed 0

bench-speed: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.forecast_speed --series 96 --prophet-series 24 --workers 2

bench-daemon: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.daemon --sizes 1000,10000,100000 --retrain-series 200 --prophet-series 10

bench-faults: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.faults --kills 50 --stops 10 --fuzz 10000

bench-retrain: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.retrain

bench-servers: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m smartmetrics.benchmarks.servers

# issue 23: the local pool of 1 and 2 processes beside Dask at 1 and 2 workers (same bands, throughput, cost
# per series and per batch, a projection of 1,000,000 series), 3 sharded daemons of 100k series, the series
# moved by resharding 3 -> 4 (and 4 -> 5, 9 -> 10) of 300k, remote-write encoding of 100k series
bench-scale: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.dask_fit --series 300 --rounds 3
	$(BIN)/python -m smartmetrics.benchmarks.daemon --sizes "" --retrain-series 0 --shards 3 --per-shard 100000
	$(BIN)/python -m smartmetrics.benchmarks.reshard --series 300000
	$(BIN)/python -m smartmetrics.benchmarks.remote_write --series 100000

# the earlier name of bench-scale
bench-cluster: bench-scale

# issue 25: false alerts across a daylight-saving switch (local clock against UTC) and on holidays
# (calendar.holidays against none)
bench-dst: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.dst --series 12
	$(BIN)/python -m smartmetrics.benchmarks.holidays --series 12

bench-autoscale: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.autoscale

# issue 26: noise on every false alert of the first week, replayed walk-forward (test seeds 2 and 3)
bench-feedback: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.feedback --seeds 2,3 --workers 2

bench-tuning: $(STAMP)
	$(BIN)/python -m smartmetrics.benchmarks.tuning

# every benchmark of BENCHMARKS.md, one after the other (about 40 minutes on 2 cores)
bench: bench-fetch bench-classify bench-quality bench-ceiling bench-speed bench-daemon bench-tuning bench-faults bench-retrain bench-scale bench-dst bench-autoscale bench-feedback

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
