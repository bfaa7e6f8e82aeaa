"""Process lifetime: a schnitzel process does not outlive whoever started it.

``die_with_parent()`` is called first thing by the container and the lifecycle manager entry
points (and by the built-in runner in each child before exec): Linux's ``PR_SET_PDEATHSIG``
delivers SIGTERM to the process when its parent exits for any reason, SIGKILL included. So
when ``ros2 launch`` is stopped by SIGTERM (systemd, a supervisor) and does not stop its
children itself, or the runner is killed, the containers and the manager get SIGTERM and shut
their nodes down in order. Elsewhere than Linux it does nothing (the supervisor's own
clean-up still applies).
"""
from __future__ import annotations

import ctypes   # imported here, not in die_with_parent: the runner calls it between fork and exec
import os
import signal
import sys
from typing import IO, Iterable, Optional, Tuple

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel for ``sig`` when the parent exits; True where that is in force.

    A parent that died before the request was made is noticed too (the process was re-parented
    meanwhile): the signal is then sent at once."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:       # the parent went between getppid() and prctl()
        os.kill(os.getpid(), sig)
    return True


def hold_free(path_template: str, candidates: Iterable[int]) -> Optional[Tuple[int, IO[str]]]:
    """The first of ``candidates`` whose lock file (``path_template.format(n)``) no other process
    holds, with that file locked (flock) until it is closed or this process ends; None when all
    are held. How test runs share ROS domains and chaos runs their sandbox subnets on one machine
    (scripts/test.sh takes the same domain locks)."""
    import fcntl

    for n in candidates:
        fh = open(path_template.format(n), "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        return n, fh
    return None


def parent_gone(parent: int) -> bool:
    """Whether the process that started us (its pid when we started) has exited since."""
    return os.getppid() != parent


__all__ = ["die_with_parent", "hold_free", "parent_gone"]
