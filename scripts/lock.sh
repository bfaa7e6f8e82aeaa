#!/usr/bin/env bash
# Regenerate constraints.txt (the full transitive pin set) from the current .venv.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
{ echo "# Full transitive pin set (pip constraints) for a reproducible .venv; regenerate with"
  echo "# scripts/lock.sh after changing requirements*.txt."
  .venv/bin/python -m pip freeze --exclude-editable | grep -v '@ file' | grep -v -iE '^(pip|setuptools|wheel|schnitzel[-_].*)=='
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
