"""The request line decoded and type-checked in C, when msgspec is installed (memwarden[fast]).

msgspec decodes a line straight into a typed structure: a wrong type, a
null, NaN, a number out of range or a missing pid fails the decoding, and
such a line takes the ordinary path (``reader``), whose reading is the
contract. What passes here is what the ordinary path would keep, so the
two agree line for line; the remaining checks (ranges, empty or
unprintable text) are plain comparisons in ``stream``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

__all__ = ["RequestLine", "decode_request", "fast_decode"]

RequestLine: Any = None
decode_request: Callable[[bytes], Any] | None = None
fast_decode: Callable[[bytes], Any] | None = None
DECODE_ERRORS: tuple[type[Exception], ...] = (ValueError, RecursionError)

try:
    import msgspec
except ImportError:  # the standard json module does it all, slower
    pass
else:
    _MAX = 2**62  # reader.MAX_MAGNITUDE
    _Id = Annotated[int, msgspec.Meta(ge=0, le=_MAX)]
    _Size = Annotated[float, msgspec.Meta(ge=0, le=_MAX)]
    _Signed = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]
    _Text = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    _NAN = math.nan

    class _RequestLine(msgspec.Struct):
        # Absent numbers are NaN and absent text "" (an empty string in the
        # line fails min_length and goes the ordinary way, which counts it).
        logger: str
        message: str
        pid: _Id
        seq: _Id
        route: _Text = ""
        method: _Text = ""
        status: _Id = _NAN  # type: ignore[assignment]  # NaN: absent
        duration_ms: _Size = _NAN
        rss_bytes: _Size = _NAN
        rss_delta_bytes: _Signed = _NAN
        blocks_delta: _Signed = _NAN
        blocks: _Size = _NAN
        pss_bytes: _Size = _NAN
        uss_bytes: _Size = _NAN
        census: dict[str, float] | None = None
        timestamp: _Text = ""

    RequestLine = _RequestLine
    decode_request = msgspec.json.Decoder(_RequestLine).decode
    fast_decode = msgspec.json.Decoder().decode
    DECODE_ERRORS = (msgspec.DecodeError, RecursionError)
