# The two commands of the README's quick start, and a few for maintainers.
# Everything the project needs is installed from its own files into .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 31415
# Every figure script in bench/ (harness.py and peers.py are their helpers; soak.py
# runs for 10 minutes and is run by hand).
BENCHES := $(filter-out bench/harness.py bench/peers.py bench/soak.py,$(wildcard bench/*.py))

# Seconds each fuzz target runs under `make fuzz` (`make test` runs each for 10 s).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := wxf protocol

.PHONY: serve test check typecheck bench fuzz clean system-programs-if-possible

# A stamp per flavour, so a second `make` does not reinstall.
$(VENV)/.stamp-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

# The test suite runs the doors' and the cluster's tests too: their extras come with it.
TEST_EXTRAS = test,jupyter,mcp,ray

$(VENV)/.stamp-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $@ $(VENV)/.stamp-run

serve: $(VENV)/.stamp-run
	$(VENV)/bin/linkserver serve --port $(PORT)

test: $(VENV)/.stamp-test typecheck system-programs-if-possible
	$(PY) -m pytest -q

# Programs some tests drive, installed where this machine allows it (root with apt-get):
# nmap for the port-scan test (tests/integration/test_hostile_scan.py), Chromium for the
# notebook in a browser (tests/integration/test_jupyter_browser.py). Elsewhere those tests
# say they were skipped and why.
SYSTEM_PROGRAMS := nmap:nmap chromium:chromium

system-programs-if-possible:
	@for pair in $(SYSTEM_PROGRAMS); do prog=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$prog >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null 2>&1; }; }; } || \
	  echo "$$prog is not installed here: the tests that need it will be skipped"; done

# Longer fuzzing: new inputs go to fuzz/work/<target>, crashes to fuzz/work/ (see fuzz/README.md).
fuzz: $(VENV)/.stamp-test
	for t in $(FUZZ_TARGETS); do mkdir -p fuzz/work/$$t; \
	  $(PY) fuzz/fuzz_$$t.py fuzz/work/$$t fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=10 -artifact_prefix=fuzz/work/ || exit 1; done

typecheck: $(VENV)/.stamp-test
	$(VENV)/bin/mypy

bench: $(VENV)/.stamp-test
	$(PY) -m pip install --quiet -e '.[$(TEST_EXTRAS),bench]'
	for f in $(BENCHES); do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .hypothesis fuzz/work
