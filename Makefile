# Two commands for a fresh machine: `make run` (demo store + API server) and `make test` (the suite).
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_STORE ?= .riskstrata-store/demo
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps riskmodels-py==0.5.0
	touch $(STAMP)

# Builds the demo store once (when it has no built cascade), issues a fresh demo API key (the
# previous one is revoked: keys are stored hashed and cannot be shown again), then serves.
run: $(STAMP)
	@test -f $(DEMO_STORE)/models/cascade/CURRENT || $(BIN)/riskstrata demo --store $(DEMO_STORE)
	@key=$$($(BIN)/riskstrata keys create demo --replace --store $(DEMO_STORE)) || exit 1; \
	printf '\nDashboard: open http://$(HOST):$(PORT)/ in a browser (sample portfolio: one click on /portfolio)\n'; \
	printf '\nPoint riskmodels-py (or curl) at the demo server:\n\n'; \
	printf '  export RISKMODELS_BASE_URL=http://$(HOST):$(PORT)/api\n'; \
	printf '  export RISKMODELS_API_KEY=%s\n\n' "$$key"; \
	printf '  interactive docs: http://$(HOST):$(PORT)/api/docs\n\n'
	$(BIN)/riskstrata serve --store $(DEMO_STORE) --host $(HOST) --port $(PORT)

# The browser tests (tests/web) drive Debian's chromium; CI runs as root on a fresh machine, so
# install it with apt where it is missing (elsewhere those tests skip with the reason).
CHROMIUM ?= /usr/bin/chromium

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: $(CHROMIUM) missing and not root: the browser tests will skip"; fi

# The PDF report tests read the page back with poppler's pdftotext / pdftoppm: installed the same way.
PDFTOTEXT ?= /usr/bin/pdftotext

$(PDFTOTEXT):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null; \
	else echo "note: $(PDFTOTEXT) missing and not root: the PDF report tests will skip"; fi

# Two workers, whole files each (module fixtures build stores once): the suite waits on servers,
# browsers and subprocesses about half the time, so two processes fill the 2 cores (7:13 against
# 11:00 serial on the same machine). PYTHONDONTWRITEBYTECODE is cleared for the run: where it is
# set, pytest cannot cache the modules it rewrites for assertions (the test files and the plugins
# it loads: schemathesis, hypothesis, anyio, xdist, ~370 modules), and every pytest process
# rewrote them again (~8 s CPU each; collection 18 s CPU -> 10 s once cached).
test: $(STAMP) | $(CHROMIUM) $(PDFTOTEXT)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist loadfile

# The inner loop: no real-data and no long-running tests (markers in pyproject.toml), stop at the first failure.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not slow and not realdata"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cascade.py

clean:
	rm -rf $(VENV) .riskstrata-store .pytest_cache
