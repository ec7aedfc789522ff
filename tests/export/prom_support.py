"""Helpers of the Prometheus tests: the prometheus and promtool binaries, and one
series' value in the text format."""

from __future__ import annotations

import shutil

import pytest

INSTALL_HINT = ("apt-get install -y prometheus (Debian's package provides the prometheus "
                "server and promtool; the Makefile's `prometheus` target installs it)")


def tool(name: str) -> str:
    """The path of the prometheus or promtool binary; a clear failure, never a skip,
    when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return path


def sample(text: str, series: str) -> float:
    """The value of ``series`` (a name, with its labels if it has any) in a scrape,
    which must hold it exactly once."""
    found = [line for line in text.splitlines() if line.startswith(series + " ")]
    assert len(found) == 1, (series, text)
    return float(found[0].rsplit(" ", 1)[1])
