# `make demo`: set up, train keye-demo once (cached), show what it does on held-out and sample clips.
# `make test`: set up, start the stack, run every test.
# `make lint`: ruff (lint and format check), mypy over the packages, every noqa / type: ignore explained; CI runs it before the tests.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: demo test lint setup system-deps stack-up stack-down clean

demo: $(VENV_STAMP)
	.venv/bin/keye demo

test: $(VENV_STAMP) system-deps
	.venv/bin/keye stack up
	$(PY) -m pytest -ra

lint: $(VENV_STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	$(PY) scripts/check_suppressions.py

setup: $(VENV_STAMP)

system-deps:
	scripts/system-deps.sh

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(VENV_STAMP)

stack-up: $(VENV_STAMP) system-deps
	.venv/bin/keye stack up

stack-down:
	.venv/bin/keye stack down

clean: stack-down
	rm -rf .stack .keye
