# Set-up and entry points. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test clean

# Each target installs what it needs into the venv (created when missing), again whenever
# pyproject.toml changes. The demo needs no test tools and no torch.
$(VENV)/.installed-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,torch]'
	touch $@

demo: $(VENV)/.installed-base
	$(PY) -m amfi_jax.main --config=configs/fusion.py:demo --workdir=workdirs/demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n 2 --dist=loadscope --no-loadscope-reorder --durations=25 tests

clean:
	rm -rf $(VENV) workdirs
