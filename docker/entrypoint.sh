#!/usr/bin/env bash
# Enter the ROS 2 and schnitzel environments, then run the given command.
set -e
source "/opt/ros/${ROS_DISTRO}/setup.bash"
source /opt/schnitzel/scripts/env.sh
exec "$@"
