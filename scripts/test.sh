#!/usr/bin/env bash
# Install, then run the whole test suite. pytest's exit code 5 (no tests collected) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
set +e
# Two test processes, each taking whole files (a module's fixtures, such as a trained sweep, are built
# once). A Ray test keeps about one core busy, so two side by side take the suite from about 15 to
# about 9 minutes on 2 cores (BENCHMARKS.md, "The test suite"). `-n 0` runs it in one process.
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$code"
