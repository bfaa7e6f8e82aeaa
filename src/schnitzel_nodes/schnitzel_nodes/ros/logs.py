"""A node's logic logs through Python logging; its records go to the node's ROS logger."""
from __future__ import annotations

import logging
from typing import Any

class _RosLogHandler(logging.Handler):
    """Python logging records of a node's logic -> the node's ROS logger (and /rosout)."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(msg)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(msg)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(msg)
            else:
                self.ros_logger.debug(msg)
        except Exception:  # noqa: BLE001 - logging must never break the node
            self.handleError(record)


def _logic_logger(graph: str, node_id: str, ros_logger: Any) -> logging.Logger:
    log = logging.getLogger(f"schnitzel.{graph}.{node_id}")
    log.handlers = [h for h in log.handlers if not isinstance(h, _RosLogHandler)]
    log.addHandler(_RosLogHandler(ros_logger))
    log.propagate = False
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    return log
