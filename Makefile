# chatactors: `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run serve repl test test-fast lint bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The bench-only extra (matplotlib for the gateway plot, py-spy for its profile).
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The main job: the chat server (embedded SQLite, in-process actors) on 127.0.0.1:$(PORT).
PORT ?= 8765
run: $(STAMP)
	@$(PY) -m chatactors serve --port $(PORT)

# A Python prompt with `chat` ready: attached to the server of `make run` when one answers (URL=...
# to pick another), else an embedded chat on the same SQLite file; its first line says which.
repl: $(STAMP)
	$(PY) -m chatactors repl $(if $(URL),--url $(URL),)

# Finds PostgreSQL (or starts a throwaway cluster); with CI=true the PostgreSQL tests must run.
test: $(STAMP)
	@url=$$(scripts/find-postgres.sh); \
	if [ -n "$$url" ]; then echo "PostgreSQL for tests: $$url"; \
	elif [ "$$CI" = "true" ]; then echo "CI=true but no PostgreSQL could be found or started" >&2; exit 1; \
	else echo "no PostgreSQL: its tests will be skipped"; fi; \
	CHATACTORS_TEST_DATABASE_URL="$$url" $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check chatactors tests examples bench
	$(VENV)/bin/ruff check chatactors tests examples bench
	$(VENV)/bin/mypy chatactors

bench: $(BENCH_STAMP)
	@url=$$(scripts/find-postgres.sh); export CHATACTORS_TEST_DATABASE_URL="$$url"; rc=0; \
	$(PY) bench/core.py $(BENCH_ARGS) || rc=1; \
	$(PY) bench/rooms.py $(BENCH_ARGS) || rc=1; \
	$(PY) bench/gateway.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick,) || rc=1; \
	$(PY) bench/recovery.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick,) || rc=1; \
	$(PY) bench/storage.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick,) || rc=1; \
	$(PY) bench/cluster.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick,) || rc=1; \
	exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info chatactors.db chatactors.db-* chatactors.db.lock .pytest_cache .mypy_cache .ruff_cache
