#!/usr/bin/env bash
# Install everything, then run the demo on embedded defaults (see README.md).
# Arguments go to the demo, e.g. `scripts/demo.sh --keep`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/install.sh
exec .venv/bin/python -m shifter.cli.demo "$@"
