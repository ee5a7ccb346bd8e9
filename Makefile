# The two commands a newcomer needs (see README):
#   make app    - create .venv, install, build the demo data if missing, start the explorer
#   make test   - create .venv, install (test tools included), lint (make lint), run the whole test suite
# Everything else here is a helper for those two.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8501

.PHONY: app test lint demo-data clean-venv

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .   # the fgvc-* console scripts
	touch $(STAMP)

demo-data: $(STAMP)
	$(PY) -m train.make_demo_data

app: demo-data
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.fileWatcherType none

test: lint
	bash tests/install_browser.sh
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean-venv:
	rm -rf $(VENV)
