"""Which URLs count as local: the service talks to nothing off this host.

The check parses the URL and compares its host, instead of looking at how the
string starts: ``http://127.0.0.1:80@elsewhere/`` starts like a local URL and
goes to ``elsewhere``. Accepted: ``http`` with a host of exactly
``127.0.0.1``, ``localhost`` or ``[::1]``, an explicit port, no user info, no
backslash, no control characters or spaces. Everything else is refused,
including hosts that only look local to a person (``127.0.0.1.evil``,
``[::ffff:127.0.0.1]``, ``2130706433``, ``0x7f.1``, ``127.1``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["LOCAL_HOSTS", "local_url_problem"]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def local_url_problem(url: str) -> str | None:
    """Why ``url`` is not an http://127.0.0.1:PORT URL, or None when it is one."""
    if not url.isascii() or not url.isprintable() or any(c in url for c in " \\"):
        return "only printable ASCII without spaces or backslashes"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme != "http":
        return "the scheme must be http"
    # The authority as written: user info (even an empty "@") hides the real host.
    if "@" in parts.netloc:
        return "no user info ('@') in the host part"
    host = parts.hostname
    if host not in LOCAL_HOSTS:
        return f"the host must be one of 127.0.0.1, localhost, [::1], not {host!r}"
    if host == "::1" and not parts.netloc.startswith("[::1]"):
        return "write the IPv6 loopback as [::1]"
    if port is None or port == 0:
        return "the port must be given (1-65535)"
    return None
