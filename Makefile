# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
export DAGSTER_HOME := $(CURDIR)/.dagster
export PYTHONWARNINGS := ignore::DeprecationWarning
# Python caches the bytecode of what it imports (in .venv and the package). A shell with
# PYTHONDONTWRITEBYTECODE=1 would make every process compile its ~1,200 modules again (7 s instead
# of 3 s per import of the code location).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: env demo test test-fast lint ui backfill sql summary explain report audit check bench clean-data files-example crypto-example mixed-example typecheck

# The environment: uv (bootstrapped into .uv/ if absent) installs the locked set, then one import of
# the code location (on the bundled manifest, whatever QUANT_ASSETS_MANIFEST says) compiles the
# bytecode of the modules a run uses (8 s; compiling all of site-packages ahead of time took 50 s).
.venv/.synced: pyproject.toml uv.lock
	@if [ ! -x "$(UV)" ]; then echo "bootstrapping uv into .uv/"; python3 -m venv .uv && .uv/bin/pip install --quiet uv; fi
	$(UV) sync --frozen
	env -u QUANT_ASSETS_MANIFEST $(PY) -c "import quant_assets.definitions, quant_assets.cli.main, quant_assets.cli.runner"
	@touch $@

env: .venv/.synced

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $@

# Materialise every asset over the whole bundled history (weekly 1992-2022) and print a summary.
demo: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m quant_assets.cli.main demo

test: env
	$(PY) -m pytest

# The inner loop: every test that does not materialise a graph or drive the UI (under a minute).
test-fast: env
	$(PY) -m pytest -m "not slow and not ui"

# Dagster UI on http://127.0.0.1:3000 over the same instance the demo wrote to.
ui: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m quant_assets.cli.devserver

# Headless walk-forward: make backfill START=2020-01-01 END=2020-12-31 [SELECT='group:meta']
backfill: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m quant_assets.cli.main backfill --start $(START) --end $(END) $(if $(SELECT),--select '$(SELECT)')

# The example manifests reuse asset names of the default one (trend_long, ...): each writes its own
# lakehouse under examples/, so lakehouse/ (what `make demo` wrote) is never overwritten.
# Your own data: write a folder of CSV files from the bundled data, then backfill the files manifest
files-example: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -c "from quant_assets.data.files import write_example_folder; print(write_example_folder('examples/files'))"
	QUANT_ASSETS_LAKEHOUSE=examples/files-lakehouse QUANT_ASSETS_MANIFEST=quant_assets/config/manifests/files.yaml \
		$(PY) -m quant_assets.cli.main backfill --start 2017-01-01 --end 2022-12-31

# Crypto through ccxt, offline: write a recorded Binance folder (12 USDT markets, 2019-2022),
# then backfill the crypto manifest (24/7, every ten days); the bars are ingested into its lakehouse
crypto-example: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -c "from quant_assets.data.connectors.replay import write_crypto_example; print(write_crypto_example('examples/crypto'))"
	QUANT_ASSETS_LAKEHOUSE=examples/crypto-lakehouse QUANT_ASSETS_MANIFEST=quant_assets/config/manifests/crypto.yaml \
		$(PY) -m quant_assets.cli.main backfill --start 2020-07-01 --end 2022-12-31

# Stocks (XNYS) and crypto (24/7) under one root meta, weekly: the recorded crypto folder, then the mixed manifest
mixed-example: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -c "from quant_assets.data.connectors.replay import write_crypto_example; print(write_crypto_example('examples/crypto'))"
	QUANT_ASSETS_LAKEHOUSE=examples/mixed-lakehouse QUANT_ASSETS_MANIFEST=quant_assets/config/manifests/mixed.yaml \
		$(PY) -m quant_assets.cli.main backfill --start 2020-07-01 --end 2022-12-31

# make sql Q="SELECT * FROM meta_weights LIMIT 5"
sql: env
	$(PY) -m quant_assets.cli.main sql "$(Q)"

summary: env
	$(PY) -m quant_assets.cli.main summary

# make explain META=total_portfolio RISK=hrp DATE=2022-12-23 SYMBOL=NYSE:WMT
explain: env
	$(PY) -m quant_assets.cli.main explain $(META) $(RISK) $(DATE) $(SYMBOL)

# make report META=total_portfolio RISK=hrp DATE=2020-03-20: a meta lens's report as of any rebalance date
report: env
	$(PY) -m quant_assets.cli.main report $(META) $(RISK) $(DATE)

# Recompute the audit ledger's hash chain; list optimisations without an outcome.
audit: env
	$(PY) -m quant_assets.cli.main audit

check: env $(DAGSTER_HOME)/dagster.yaml
	.venv/bin/dg check defs

# mypy with the pydantic plugin on the whole package (clean: no module is exempted)
typecheck: env
	.venv/bin/mypy

# ruff (lint + format check) and the import contracts of the package layers (pyproject.toml).
lint: env
	.venv/bin/ruff check quant_assets quant_assets_tests benchmarks
	.venv/bin/ruff format --check quant_assets quant_assets_tests benchmarks
	.venv/bin/lint-imports

# Every figure of the README's timings (about 20 minutes; run on an otherwise idle machine).
bench: env
	$(PY) benchmarks/storage.py
	$(PY) -m benchmarks.features
	$(PY) -m benchmarks.walk_forward
	$(PY) -m benchmarks.regime_calibration
	$(PY) -m benchmarks.backfill
	$(PY) -m benchmarks.backfill --persistent
	$(PY) -m benchmarks.incremental
	$(PY) -m benchmarks.definition_load
	$(PY) -m benchmarks.scale
	$(PY) -m benchmarks.dagster_floor --period year --store memory batched --keys-per-step 7
	$(PY) -m benchmarks.regression

clean-data:
	find lakehouse -mindepth 1 ! -name README.md -delete
	rm -rf $(DAGSTER_HOME)
