#!/usr/bin/env bash
# Set up schnitzel on this machine: Python environment, ROS 2, and the colcon workspace.
#
#   scripts/setup.sh            # idempotent; a second run reinstalls nothing
#   scripts/setup.sh --test     # the same, plus the test-only packages (requirements-test.txt)
#
# Without ROS 2 on the machine it creates .venv (Python 3.10-3.12), installs the pinned
# ROS 2 Kilted wheels and Python dependencies (requirements-ros.txt, requirements.txt,
# constraints.txt), repairs the wheels' CMake include paths inside .venv and builds the
# workspace. With a ROS 2 Jazzy or Kilted already sourced (ROS_DISTRO set) it uses that
# ROS 2 and installs only the Python dependencies into a .venv that sees the system packages.
# Nothing is written outside the repository.
set -eo pipefail

WITH_TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) printf '[setup] error: unknown option %s (known: --test)\n' "$arg" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMP="$VENV/.schnitzel-setup.sha256"

say()  { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
fail() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# ---- prerequisites -----------------------------------------------------------
command -v cmake >/dev/null 2>&1 || fail "cmake is missing (needed to build schnitzel_msgs). Install it: apt-get install cmake"
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || fail "a C compiler is missing. Install one: apt-get install build-essential"
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || fail "a C++ compiler is missing. Install one: apt-get install g++"

MODE=wheels
if [ -n "${ROS_DISTRO:-}" ] && [ -z "${SCHNITZEL_FORCE_WHEELS:-}" ]; then
  case "$ROS_DISTRO" in
    jazzy|kilted) MODE="system" ;;
    *) fail "ROS_DISTRO=$ROS_DISTRO is sourced, but schnitzel supports Jazzy or Kilted. Open a shell without it (or set SCHNITZEL_FORCE_WHEELS=1 to use the PyPI wheels)." ;;
  esac
fi

pick_python() {
  local cand
  if [ "$MODE" = system ]; then
    cand=$(command -v python3) || true
    [ -n "$cand" ] && echo "$cand" && return 0
  fi
  for cand in "${SCHNITZEL_PYTHON:-}" python3.11 python3.12 python3.10 python3; do
    [ -n "$cand" ] || continue
    command -v "$cand" >/dev/null 2>&1 || continue
    if "$cand" -c 'import sys; sys.exit(0 if (3,10) <= sys.version_info[:2] <= (3,12) else 1)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  return 1
}
PY=$(pick_python) || fail "no supported Python found: the ROS 2 wheels need CPython 3.10, 3.11 or 3.12 (with venv). Install one, or set SCHNITZEL_PYTHON=/path/to/python3.11"
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$PY" -c 'import venv, ensurepip' 2>/dev/null || fail "$PY lacks the venv module. Install it: apt-get install python${PYVER}-venv"
say "mode: $MODE ($( [ "$MODE" = system ] && echo "ROS 2 $ROS_DISTRO from the system" || echo "ROS 2 Kilted from PyPI wheels")), Python $PYVER ($PY)"

# ---- virtual environment -----------------------------------------------------
if [ -x "$VENV/bin/python" ]; then
  have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)
  have_mode=$(cat "$VENV/.schnitzel-mode" 2>/dev/null || echo none)
  if [ "$have" != "$PYVER" ] || [ "$have_mode" != "$MODE" ]; then
    say "existing .venv is Python $have / $have_mode; recreating it for Python $PYVER / $MODE"
    rm -rf "$VENV"
  fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating .venv"
  if [ "$MODE" = system ]; then "$PY" -m venv --system-site-packages "$VENV"; else "$PY" -m venv "$VENV"; fi
  echo "$MODE" > "$VENV/.schnitzel-mode"
fi
# The wheels' .pth re-executes Python to set LD_LIBRARY_PATH; set it once instead (wheels pitfall 5).
VPY="$VENV/bin/python"

# ---- Python packages (skipped when the pinned files have not changed) ---------
want=$(cat requirements.txt constraints.txt $( [ "$MODE" = wheels ] && echo requirements-ros.txt ) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  say "Python packages up to date (nothing to install)"
else
  say "installing pinned Python packages into .venv (first run: about a minute)"
  "$VPY" -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.1.1" "setuptools==68.1.2" "wheel==0.45.1"
  reqs=(-r requirements.txt)
  if [ "$MODE" = wheels ]; then
    reqs+=(-r requirements-ros.txt)
  else
    # A system ROS 2 ships numpy and OpenCV built together with cv_bridge; keep those
    # (a pip numpy in front of them breaks cv_bridge's ABI) and install the rest.
    sys_has() { "$VPY" -c "import $1" >/dev/null 2>&1; }
    filtered="$VENV/requirements.system.txt"
    cp requirements.txt "$filtered"
    sys_has numpy && sed -i '/^numpy==/d' "$filtered"
    sys_has cv2 && sed -i '/^opencv-python-headless==/d' "$filtered"
    reqs=(-r "$filtered")
    command -v colcon >/dev/null 2>&1 || reqs+=("colcon-common-extensions==0.3.0")
  fi
  cons=(-c constraints.txt)
  [ "$MODE" = system ] && cons=()   # the lock pins the wheels' numpy; a system ROS 2 brings its own
  "$VPY" -m pip install --disable-pip-version-check --progress-bar on "${cons[@]}" "${reqs[@]}" \
    || fail "pip could not install the pinned packages (see above). Check the network access to the package index."
  # rosidl needs lark-parser 0.12; "lark" 1.x installs the same module and breaks it (wheels pitfall 4).
  if "$VPY" -m pip show lark >/dev/null 2>&1; then
    "$VPY" -m pip uninstall -y -q lark && "$VPY" -m pip install -q --force-reinstall --no-deps lark-parser==0.12.0
  fi
  echo "$want" > "$STAMP"
fi
# Test-only packages: their own stamp, so a runtime setup after a test setup installs nothing.
TEST_STAMP="$VENV/.schnitzel-test.sha256"
if [ "$WITH_TEST" = 1 ]; then
  want_test=$(cat requirements-test.txt constraints.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$TEST_STAMP" 2>/dev/null)" = "$want_test" ]; then
    say "test packages up to date (nothing to install)"
  else
    say "installing the pinned test packages (requirements-test.txt)"
    test_cons=(-c constraints.txt)
    [ "$MODE" = system ] && test_cons=()
    "$VPY" -m pip install --quiet --disable-pip-version-check "${test_cons[@]}" -r requirements-test.txt \
      || fail "pip could not install the pinned test packages (see above). Check the network access to the package index."
    echo "$want_test" > "$TEST_STAMP"
  fi
fi

# ---- repair the wheels' CMake paths (inside .venv only) ----------------------
if [ "$MODE" = wheels ]; then
  # Library paths of the wheels, set once (wheels pitfall 5): same as scripts/env.sh.
  for lib in "$VENV/lib" "$VENV"/lib/python3.*/site-packages/ros_*.libs; do
    [ -d "$lib" ] && LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  export LD_LIBRARY_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
  "$VPY" scripts/repair_wheel_cmake.py
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
fi

# ---- build the workspace ------------------------------------------------------
say "building the colcon workspace (src/)"
export PATH="$VENV/bin:$PATH"
mkdir -p build
exec 8>build/.schnitzel-build.lock
flock 8   # one colcon build at a time in this workspace
COLCON="$VENV/bin/colcon"; [ -x "$COLCON" ] || COLCON=$(command -v colcon)
"$COLCON" build --symlink-install \
  --event-handlers console_cohesion- summary+ status- \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VPY" \
  || fail "colcon build failed (see the log above and log/latest_build)."

say "done. Enter the environment with:  source scripts/env.sh"
