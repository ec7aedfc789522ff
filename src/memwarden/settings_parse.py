"""The parsers of MEMWARDEN_* values: each takes the raw string and returns the
value or raises ValueError saying what it expected (memwarden.settings names the
variable). Sizes and ratios are in memwarden.sizes."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["float_at_least", "int_at_least", "parse_auto_bool", "parse_bool",
           "parse_footprint_kind", "parse_host", "parse_log_level", "parse_mode",
           "parse_optional_seconds", "parse_paths", "parse_port", "parse_url_path"]


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value
    return parse


def float_at_least(minimum: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        # inf would make a grace or an interval endless; "1e999" reads as inf too.
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number of at least {minimum}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value
    return parse


def parse_paths(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def parse_url_path(raw: str) -> str:
    value = raw.strip()
    if value and (not value.startswith("/") or "?" in value or " " in value):
        raise ValueError("expected a path such as /metrics, or empty")
    return value


def parse_port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return value


def parse_host(raw: str) -> str:
    value = raw.strip()
    if not value:
        # An empty bind address means every interface to the socket API.
        raise ValueError("expected an address such as 127.0.0.1 (0.0.0.0 for every "
                         "interface), not empty")
    return value


def parse_mode(raw: str) -> str:
    value = raw.strip().lower().replace("_", "-")
    if value not in ("on", "dry-run", "off"):
        raise ValueError("expected on, dry-run or off")
    return value


def parse_footprint_kind(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("rss", "pss"):
        raise ValueError("expected rss or pss")
    return value


def parse_optional_seconds(raw: str) -> float | None:
    if raw.strip().lower() in ("", "auto"):
        return None
    return float_at_least(0.0)(raw)


def parse_auto_bool(raw: str) -> str:
    value = raw.strip().lower()
    if value == "auto":
        return value
    try:
        return "on" if parse_bool(raw) else "off"
    except ValueError:
        raise ValueError("expected auto, 1 or 0") from None


def parse_log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value
