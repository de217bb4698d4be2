# The README's commands. Everything a fresh machine needs is installed by these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS_BIN := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cohort-streamer/bin
export PATH := $(abspath $(BIN)):$(TOOLS_BIN):$(PATH)

.PHONY: demo test rust-test lint bench tools clean

# the Rust extension's sources (streamer/fastpath): the editable install builds it, so a change
# to them reinstalls
FASTPATH := $(wildcard streamer/fastpath/Cargo.toml streamer/fastpath/Cargo.lock streamer/fastpath/src/*.rs)

# the virtualenv, rebuilt when the dependencies or the extension's sources change
$(VENV)/.installed: pyproject.toml $(FASTPATH)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed  ## local Kafka + emulator + sample events -> streamer -> report
	$(BIN)/cohort-streamer demo

tools:  ## helm (from its Go module) and prometheus/promtool (Debian) for the chart checks
	bash tests/tools/ensure_tools.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check streamer tests
	$(BIN)/mypy --strict streamer
	cargo fmt --manifest-path streamer/fastpath/Cargo.toml --check
	cargo clippy --quiet --manifest-path streamer/fastpath/Cargo.toml --release --all-targets -- -D warnings

# the Rust unit tests of the crate's pure modules. Test binaries are programs, so they link the
# interpreter's libpython (the extension does not: setuptools-rust turns on its
# extension-module feature), and the loader is told where the venv's interpreter keeps it.
rust-test: $(VENV)/.installed
	PYO3_PYTHON=$(abspath $(BIN)/python) \
	LD_LIBRARY_PATH=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))') \
	cargo test --quiet --manifest-path streamer/fastpath/Cargo.toml

test: $(VENV)/.installed tools lint rust-test  ## lint, type-check, Rust unit tests, then every test on a real broker
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed  ## the performance benchmark (minutes); results in tests/bench/results/
	$(BIN)/python -m tests.bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
