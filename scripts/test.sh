#!/bin/bash
# The test suite: lint, types, unit tests, then integration tests on the real engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check mortar tests bench
.venv/bin/mypy mortar
.venv/bin/python -m pytest tests "$@"
