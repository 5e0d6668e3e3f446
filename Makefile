# The two commands of the README's quick start, and a few for maintainers.
# Everything the project needs is installed from its own files into .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 31415
# Every figure script in bench/ (harness.py and peers.py are their helpers).
BENCHES := $(filter-out bench/harness.py bench/peers.py,$(wildcard bench/*.py))

.PHONY: serve test check typecheck bench clean

# A stamp per flavour, so a second `make` does not reinstall.
$(VENV)/.stamp-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.stamp-run

serve: $(VENV)/.stamp-run
	$(VENV)/bin/linkserver serve --port $(PORT)

test: $(VENV)/.stamp-test typecheck
	$(PY) -m pytest -q

typecheck: $(VENV)/.stamp-test
	$(VENV)/bin/mypy

bench: $(VENV)/.stamp-test
	$(PY) -m pip install --quiet -e '.[test,bench]'
	for f in $(BENCHES); do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .hypothesis
