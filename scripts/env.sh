# Enter the schnitzel environment in this shell:   source scripts/env.sh
# Sets the venv, ROS 2 paths (AMENT_PREFIX_PATH, LD_LIBRARY_PATH), the built overlay
# (install/local_setup.bash) and localhost-only DDS discovery by default.
# Safe to source more than once; not meant for `set -u` shells (wheels pitfall 6).
_sz_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_sz_venv="$_sz_root/.venv"
if [ ! -x "$_sz_venv/bin/python" ]; then
  echo "schnitzel: .venv is missing; run scripts/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
_sz_mode="$(cat "$_sz_venv/.schnitzel-mode" 2>/dev/null || echo wheels)"
export VIRTUAL_ENV="$_sz_venv"
case ":$PATH:" in *":$_sz_venv/bin:"*) ;; *) export PATH="$_sz_venv/bin:$PATH" ;; esac
if [ "$_sz_mode" = wheels ]; then
  case ":${LD_LIBRARY_PATH:-}:" in *":$_sz_venv/lib:"*) ;; *) export LD_LIBRARY_PATH="$_sz_venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
  # The wheels' vendored libraries (libtinyxml2, ...) live in site-packages/ros_*.libs; the
  # bootstrap .pth would add them, but it is switched off below, so add them here.
  for _sz_d in "$_sz_venv"/lib/python3.*/site-packages/ros_*.libs; do
    [ -d "$_sz_d" ] || continue
    case ":$LD_LIBRARY_PATH:" in *":$_sz_d:"*) ;; *) export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$_sz_d" ;; esac
  done
  unset _sz_d
  export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
  case ":${AMENT_PREFIX_PATH:-}:" in *":$_sz_venv:"*) ;; *) export AMENT_PREFIX_PATH="$_sz_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$_sz_venv:"*) ;; *) export CMAKE_PREFIX_PATH="$_sz_venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export PYTHONUNBUFFERED=1
if [ -f "$_sz_root/install/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  . "$_sz_root/install/local_setup.bash"
fi
unset _sz_root _sz_venv _sz_mode
# The `schnitzel` command: installed ROS-style under lib/<pkg> (for `ros2 run`), put on PATH too.
if [ -d "$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)/install/schnitzel_bringup/lib/schnitzel_bringup" ]; then
  _sz_bin="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)/install/schnitzel_bringup/lib/schnitzel_bringup"
  case ":$PATH:" in *":$_sz_bin:"*) ;; *) export PATH="$_sz_bin:$PATH" ;; esac
  unset _sz_bin
fi
