"""Where a protective action is performed: one place for ``on``, ``dry-run``, ``off``.

Recycling, shedding and orphan reaping each decide elsewhere, then call
:func:`perform` with the log line's fields and a callable that acts.
``on`` logs ``<message>`` and does it; ``dry-run`` logs ``would_<message>``
with the same figures and does nothing; ``off`` does neither.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

__all__ = ["DRY_RUN", "OFF", "ON", "emit", "perform"]

ON = "on"
DRY_RUN = "dry-run"
OFF = "off"


def emit(logger: logging.Logger, message: str, fields: dict[str, Any],
         level: int = logging.INFO) -> None:
    """One JSON line: ``message`` and ``fields`` (``pid`` added when absent; a field
    that is None is left out, as on the request line). Never raises."""
    try:
        if not logger.isEnabledFor(level):
            return
        fields = {k: v for k, v in fields.items() if v is not None}
        if "pid" not in fields:
            fields = {"pid": os.getpid(), **fields}
        logger.log(level, message, extra={"memwarden": fields})
    except Exception:
        pass


def perform(mode: str, logger: logging.Logger, message: str, fields: dict[str, Any],
            act: Callable[[], None], level: int = logging.INFO) -> bool:
    """Log and do (``on``), log ``would_<message>`` (``dry-run``), or nothing. True if done."""
    if mode == OFF:
        return False
    if mode == DRY_RUN:
        emit(logger, f"would_{message}", fields, level)
        return False
    emit(logger, message, fields, level)
    act()
    return True
