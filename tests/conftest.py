"""Fixtures shared across the suite."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from memwarden import events


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of no concern to memwarden: what a reused pid names."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def published() -> Iterator[list[events.Event]]:
    """The events published on memwarden's bus while the test runs, in order."""
    heard: list[events.Event] = []
    events.subscribe(heard.append)
    try:
        yield heard
    finally:
        events.unsubscribe(heard.append)
