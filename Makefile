# One-command entry points. Both create .venv on first use and install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint browser install clean

# torch 2.13.0 is pinned first so pip takes the CPU build these machines carry instead of a
# multi-GB CUDA download; on a GPU machine install torch yourself, then `pip install -e .[dev]`.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The linter and the formatter's check run first: a red lint fails `make test` (and so CI).
lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts

# The browser test drives Debian's Chromium (Playwright downloads no browser here): install it when
# missing, or stop with a message saying how (HELIOS_SKIP_BROWSER=1 skips that one test on purpose).
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$HELIOS_SKIP_BROWSER" = 1 ] || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "make test needs Debian's chromium for the browser test: run 'sudo apt-get install chromium'" \
	         "or set HELIOS_SKIP_BROWSER=1 to skip that test"; exit 1; }

# Two pytest workers of one thread each: most tests are single-threaded work that a second core
# halves, and two workers with torch's default threads each oversubscribe the cores (2-core machine,
# 2026-11-29: 5:57 in one process, 6:50 with two workers, 3:28 with two workers of one thread).
test: lint browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2

# A 10-second video (240 frames requested, 261 returned) from the embedded default model, on the CPU.
demo: $(STAMP)
	$(PY) -m helios.cli generate --device cpu --frames 240 --out outputs/demo.mp4 \
		--prompt "a large red circle moves right slowly and a small yellow square moves up quickly on a black background"

clean:
	rm -rf $(VENV) outputs .pytest_cache
