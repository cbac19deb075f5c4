# The two commands: `make run` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export SAFESPACE_DATA_DIR ?= ./data

.PHONY: run test test-fast lint setup lock migrate demo fuzz bench bench-submit bench-dashboard clean screenshot messages

# requirements.lock holds the versions the suite last passed with, as constraints: a fresh machine
# gets those, within pyproject.toml's ranges.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# After changing a dependency (pip install -U NAME in .venv) and a passing `make test`: pin what was tested.
lock: $(STAMP)
	{ echo "# The versions the test suite passed with; \`make setup\` installs them as constraints. Regenerate with \`make lock\`."; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^safespace=='; } > requirements.lock
	touch $(STAMP)

# `make run PORT=8080 HOST=0.0.0.0`: the printed links and SAFESPACE_BASE_URL (when unset) follow.
HOST ?= 127.0.0.1
PORT ?= 8000
run: $(STAMP)
	$(BIN)/safespace migrate
	$(BIN)/safespace demo --host $(HOST) --port $(PORT)
	$(BIN)/safespace serve --host $(HOST) --port $(PORT)

# Two workers (pytest-xdist): the browser and fault tests, which serve the app in processes of
# their own, run one after another on one worker; the in-process tests share out over both
# (tests/conftest.py, pytest_xdist_make_scheduler).
# `make test WORKERS=` runs in one process.
WORKERS ?= -n 2
test: $(STAMP)
	$(BIN)/python -m pytest $(WORKERS) --durations=20 $(PYTEST_ARGS)

# Ruff, configured in pyproject.toml; .ci/run runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check safespace surveys tests bench

# The edit loop: everything but the fault tests (tests/faults) and the browser tests (tests/e2e).
test-fast: $(STAMP)
	$(BIN)/python -m pytest --ignore=tests/faults --ignore=tests/e2e $(PYTEST_ARGS)

# Schemathesis against the OpenAPI schema, 1,000 examples per operation on both databases (the suite runs 12).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(BIN)/python -m pytest tests/test_fuzz.py -k every -p no:logging $(PYTEST_ARGS)

# Benchmarks print ratios against the bare /healthz measured in the same run; not part of `make test`.
# BENCH_ARGS go to submit.py, DASHBOARD_ARGS to dashboard.py (e.g. DASHBOARD_ARGS="--db both").
bench: $(STAMP)
	$(BIN)/python bench/submit.py $(BENCH_ARGS)
	$(BIN)/python bench/dashboard.py $(DASHBOARD_ARGS)
	$(BIN)/python bench/tokens.py $(TOKENS_ARGS)

bench-submit: $(STAMP)
	$(BIN)/python bench/submit.py $(BENCH_ARGS)

bench-dashboard: $(STAMP)
	$(BIN)/python bench/dashboard.py $(DASHBOARD_ARGS)

# Signed-in token issuance through the real route against in-process blind_sign with the same key, and /healthz p99 under it; TOKENS_ARGS go to tokens.py.
.PHONY: bench-tokens
bench-tokens: $(STAMP)
	$(BIN)/python bench/tokens.py $(TOKENS_ARGS)

# POST /signin for known against unknown addresses, one at a time through the real route, on both databases; SIGNIN_ARGS go to
# signin_timing.py (e.g. SIGNIN_ARGS="--old /tmp/signin-old" after `git worktree add /tmp/signin-old 4c3bcf2~1`, the code before the fix).
.PHONY: bench-signin
bench-signin: $(STAMP)
	$(BIN)/python bench/signin_timing.py $(SIGNIN_ARGS)

# 20 minutes of mixed traffic on PostgreSQL, two workers: p50/p99 per route, errors, RSS growth; SOAK_ARGS="--minutes 2".
.PHONY: bench-soak
bench-soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# Regenerate the message catalogs' template after changing user-facing strings.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k lazy --sort-output -o safespace/locale/messages.pot --no-location --omit-header .
	$(BIN)/pybabel update -i safespace/locale/messages.pot -d safespace/locale --no-fuzzy-matching --no-wrap --ignore-obsolete

# The README's screenshots (docs/screenshot-*.png), from a fresh demo in a temporary folder, in Chromium.
screenshot: $(STAMP)
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache
