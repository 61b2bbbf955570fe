# The two commands of the README. Both are idempotent: `setup` installs only what is missing.
.PHONY: demo test setup lint unit bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/onecard demo

# The back office tests run against SQLite and against the PostgreSQL that setup started.
export ONECARD_TEST_PG_URL ?= postgresql:///onecard_test?host=/var/run/postgresql

test: setup
	.venv/bin/ruff check onecard terminal drivers firmware_sim backoffice tests bench
	.venv/bin/python -m pytest -q

unit: setup
	.venv/bin/python -m pytest -q tests/unit

lint: setup
	.venv/bin/ruff check onecard terminal drivers firmware_sim backoffice tests bench
	.venv/bin/ruff format --check onecard terminal drivers firmware_sim backoffice tests bench

bench: setup
	.venv/bin/python bench/read_card.py
	.venv/bin/python bench/verify_card.py
	.venv/bin/python bench/ecode.py
	.venv/bin/python bench/journal_sync.py
	.venv/bin/python bench/purchase.py
	.venv/bin/python bench/runtime.py
	.venv/bin/python bench/screen.py

clean:
	rm -rf .venv .pytest_cache .ruff_cache .hypothesis
