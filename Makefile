# Every target sets up what it needs: a .venv at the repo root with the
# package and its test/example extras, and Debian's chromium when missing.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
CHROMIUM := /usr/lib/chromium/chromium

.PHONY: demo test lint typecheck deadcode contracts unit bench-overhead bench-overhead-parts bench-detect bench-recall bench-soak bench-week bench-hostile bench-analyze bench-probes bench-throughput bench-setting-costs wrk chromium prometheus venv clean

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv || { \
		echo "installing Debian's python3-venv (apt-get)"; rm -rf .venv; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
		python3 -m venv .venv; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing Debian's chromium (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@test -x $(CHROMIUM) || { echo "chromium is missing at $(CHROMIUM): apt-get install -y chromium"; exit 1; }

# Debian's wrk drives bench-throughput's load.
wrk:
	@if ! command -v wrk >/dev/null; then \
		echo "installing Debian's wrk (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	fi
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }

# Debian's prometheus gives the server and promtool for the exporter tests; the
# tests start their own server on 127.0.0.1, so the packaged service is stopped.
prometheus:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
		echo "installing Debian's prometheus (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
		(service prometheus stop || true) >/dev/null 2>&1; \
	fi
	@command -v promtool >/dev/null || { echo "promtool is missing: apt-get install -y prometheus"; exit 1; }

demo: venv chromium
	.venv/bin/memwarden demo --out reports/demo

lint: venv
	.venv/bin/ruff check src tests benchmarks examples

typecheck: venv
	.venv/bin/mypy

# Code nothing uses (vulture); vulture_whitelist.py names what is used by name
# (pytest and gunicorn hooks, protocol arguments, public fields).
deadcode: venv
	.venv/bin/vulture src/memwarden vulture_whitelist.py

# The layout's import contracts (tests/test_contracts.py): system/ imports nothing
# else of memwarden, see/ nothing of find/ hold/ export/, hold/ and export/
# nothing of each other, and no cycles.
contracts: venv
	$(PY) -m pytest -q -p no:randomly tests/test_contracts.py

# Branch coverage of the whole suite, gunicorn's and the CLI's processes included
# ([tool.coverage.run] in pyproject.toml), printed at the end.
unit: venv chromium prometheus wrk
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest -q
	$(PY) -m coverage combine -q
	$(PY) -m coverage report

test: lint typecheck contracts unit

bench-overhead: venv
	$(PY) benchmarks/overhead.py

bench-overhead-parts: venv
	$(PY) benchmarks/overhead_parts.py

bench-detect: venv
	$(PY) benchmarks/detection.py

bench-recall: venv
	$(PY) benchmarks/recall.py

bench-soak: venv chromium
	$(PY) benchmarks/soak.py

bench-week: venv chromium
	$(PY) benchmarks/week.py

bench-hostile: venv
	$(PY) benchmarks/hostile.py

# memwarden analyze over 5,000,000 request lines of 200 workers (30% of the lives
# leaking) beside json.loads of each line, then over 10,000,000: time, peak RSS.
bench-analyze: venv
	$(PY) benchmarks/analyze_scale.py

# Requests per second under real gunicorn (Flask and FastAPI, 2 workers) driven
# by wrk: bare, memwarden's defaults, the census on every request, Prometheus
# exporters and a naive tracker; and memwarden's own RSS per worker.
bench-throughput: venv wrk
	$(PY) benchmarks/throughput.py

# What each optional setting adds per request over memwarden's defaults, under
# the same gunicorn and wrk load.
bench-setting-costs: venv wrk
	$(PY) benchmarks/setting_costs.py

bench-probes: venv
	$(PY) benchmarks/probe_costs.py

clean:
	rm -rf .venv reports build dist src/*.egg-info
