#!/usr/bin/env bash
# Install everything, then run the whole test suite (lint, unit, root, service tiers).
# Arguments are passed to pytest, e.g. `scripts/test.sh -k registry -x`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/install.sh
.venv/bin/ruff check src tests bench
exec .venv/bin/python -m pytest "$@"
