"""gunicorn's logger, without building access-log entries nobody writes.

gunicorn builds every request's access-log atoms (a dict of thirty-odd
entries, the request headers among them, wrapped case-insensitively) whenever
a ``logconfig_dict`` is set, before the ``gunicorn.access`` logger is asked
whether it logs at INFO. memwarden's ``logconfig_dict`` keeps that logger at
WARNING unless ``MEMWARDEN_ACCESS_LOG=1`` (the request line covers it), so
under ``memwarden.gunicorn_conf`` every request paid for an entry that was
then dropped: about a sixth of a hello-world request's CPU under a sync worker
(``make bench-throughput``).

This class asks the logger first. gunicorn reads ``access_log_enabled`` on
every request (the sync worker in ``access()``, its ASGI protocol before it
times a request); the level check is a cached dict lookup in ``logging``, and
a level raised or lowered later is seen on the next request. Use it with
``logger_class = "memwarden.see.gunicorn_log.Logger"`` in a gunicorn config.
"""

from __future__ import annotations

import logging

from gunicorn import glogging  # type: ignore[import-untyped]

__all__ = ["Logger"]

_INFO = logging.INFO


class Logger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's ``Logger``, whose access log is off while ``gunicorn.access``
    would drop its records."""

    @property
    def access_log_enabled(self) -> bool:
        enabled: bool = super().access_log_enabled and self.access_log.isEnabledFor(_INFO)
        return enabled
