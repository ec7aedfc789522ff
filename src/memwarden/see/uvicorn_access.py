"""uvicorn's access log under gunicorn, off while nothing would write it.

gunicorn's ``UvicornWorker`` gives the ``uvicorn.access`` logger the handlers
and level of ``gunicorn.access``. uvicorn asks ``hasHandlers()`` once per
connection, and while it is true it builds every response's access-log
arguments (the client's address, the path quoted again with its query string)
before ``logging`` drops the record for its level. memwarden's
``logconfig_dict`` keeps ``gunicorn.access`` at WARNING unless
``MEMWARDEN_ACCESS_LOG=1`` (the request line covers it), so under
``memwarden.gunicorn_conf`` each request of a hello-world FastAPI app paid
about 3.5 us of CPU for a line that was never written.

With its handlers taken away while it would drop INFO records, uvicorn skips
the work. A level lowered later on ``uvicorn.access`` then finds no handler of
its own: ``MEMWARDEN_ACCESS_LOG=1`` (or a config of one's own) is the way to
have the access log.
"""

from __future__ import annotations

import logging

__all__ = ["drop_unwritten_access_log"]

ACCESS_LOGGER = "uvicorn.access"


def drop_unwritten_access_log() -> bool:
    """Take away ``uvicorn.access``'s handlers while it drops INFO records (what
    uvicorn logs access at); True when it did. Call in the worker, after
    ``UvicornWorker.__init__`` and before the server accepts connections."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.handlers or logger.isEnabledFor(logging.INFO):
        return False
    logger.handlers = []
    return True
