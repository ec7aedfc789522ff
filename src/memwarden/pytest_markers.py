"""What the plugin's markers share: reading their options, failing on bad ones,
and how their reports write numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

__all__: list[str] = []

T = TypeVar("T")


def marker_options(marker: pytest.Mark, allowed: frozenset[str], usage: str) -> dict[str, Any]:
    """The marker's keyword options; ValueError for positional or unknown ones.
    ``usage`` is the marker as written with its defaults, for the message."""
    if marker.args:
        raise ValueError(f"keyword options only: {usage}")
    unknown = sorted(set(marker.kwargs) - allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} "
                         f"(options: {', '.join(sorted(allowed))})")
    return dict(marker.kwargs)


def built_or_fail(marker_name: str, build: Callable[[], T]) -> T:
    """``build()``, or fail the test with its TypeError or ValueError in one line."""
    try:
        return build()
    except (TypeError, ValueError) as exc:
        error = str(exc)
    # Failed outside the except block, so pytest shows no chained traceback.
    pytest.fail(f"memwarden: bad {marker_name} marker: {error}", pytrace=False)


def number(value: int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def signed(value: int | float) -> str:
    return f"{value:+g}" if isinstance(value, float) else f"{value:+d}"
