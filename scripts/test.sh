#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite:
#   package tests through `colcon test` (pytest underneath), then the cross-package
#   integration, system and fault tests in test/, all reported by `colcon test-result --verbose`.
# Exit status is non-zero when any test fails.
#
# DDS traffic is isolated: a ROS_DOMAIN_ID unique to this run (unless already set) and
# localhost-only discovery, so two runs on one machine never see each other.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/setup.sh --test
scripts/install-test-deps.sh
# shellcheck disable=SC1091
source scripts/env.sh

if [ -z "${ROS_DOMAIN_ID:-}" ]; then
  # Pick a domain no other test run on this machine holds (lock files under /tmp).
  for _ in $(seq 1 200); do
    cand=$(( (RANDOM % 100) + 1 ))
    exec 9>"/tmp/schnitzel-domain-$cand.lock"
    if flock -n 9; then export ROS_DOMAIN_ID=$cand; break; fi
    exec 9>&-
  done
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export SCHNITZEL_TEST_RUN=1
# Durable state of our own (the live-source epoch ledger) goes to a folder of this run only.
export SCHNITZEL_STATE_DIR="${SCHNITZEL_STATE_DIR:-$(mktemp -d /tmp/schnitzel-state.XXXXXX)}"
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID (localhost-only discovery)"

rc=0
rm -rf build/schnitzel_system_tests
# Package tests (src/*/test). Sequential: DDS tests on a 2-core machine are timing-sensitive.
colcon test --executor sequential --event-handlers console_direct+ --return-code-on-test-failure \
  --pytest-args -p no:cacheprovider ${SCHNITZEL_PYTEST_ARGS:-} || rc=1

# Cross-package integration, system and fault-injection tests (test/), on
# SCHNITZEL_TEST_WORKERS pytest-xdist workers (default 2; 1 = in this process). Most of their
# time is spent waiting on graphs, backends and timeouts, not computing, so two workers on two
# cores halve the wall clock. A test file stays on one worker (--dist loadfile); each worker takes
# a ROS domain of its own from the same lock pool as above, and its own state folder
# (test/conftest.py), so the workers' graphs never meet.
if compgen -G "test/test_*.py" >/dev/null || compgen -G "test/**/test_*.py" >/dev/null; then
  mkdir -p build/schnitzel_system_tests
  workers="${SCHNITZEL_TEST_WORKERS:-2}"
  parallel=()
  if [ "$workers" -gt 1 ]; then parallel=(-n "$workers" --dist loadfile); fi
  python -m pytest test -p no:cacheprovider -ra "${parallel[@]}" ${SCHNITZEL_PYTEST_ARGS:-} \
    --junitxml=build/schnitzel_system_tests/pytest.xml || rc=1
fi

echo
colcon test-result --verbose --test-result-base build || rc=1
# One plain closing line summing every suite (read by CI).
python scripts/test_summary.py build || rc=1
exit $rc
