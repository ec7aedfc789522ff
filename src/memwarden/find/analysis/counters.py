"""What the reader saw, line by line: every input line lands in exactly one bucket."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InputStats", "ReadCounters"]


@dataclass(slots=True)
class ReadCounters:
    """What the reader saw. Every input line lands in exactly one bucket."""

    lines: int = 0
    request_lines: int = 0
    allocation_lines: int = 0
    lifecycle_lines: int = 0    # recycle and worker_killed: they end a worker life
    skipped_lines: int = 0      # not a memwarden line (other loggers, plain text, blank)
    malformed_lines: int = 0    # looked like JSON and was not
    oversized_lines: int = 0    # longer than MAX_LINE_BYTES
    invalid_records: int = 0    # memwarden lines missing a required field
    invalid_fields: int = 0     # optional fields dropped for a wrong type or value
    unreadable_inputs: int = 0  # inputs cut short (truncated or corrupt gzip)
    action_lines: int = 0       # the other protective-action lines (analysis.actions)
    death_lines: int = 0        # death_in_flight: a worker died with a request running
    filtered_lines: int = 0     # memwarden lines left out by --since, --until or --worker


@dataclass(frozen=True, slots=True)
class InputStats:
    """What the reader saw; see ``reader.ReadCounters`` for the buckets."""

    lines: int = 0
    request_lines: int = 0
    allocation_lines: int = 0
    lifecycle_lines: int = 0
    skipped_lines: int = 0
    malformed_lines: int = 0
    oversized_lines: int = 0
    invalid_records: int = 0
    invalid_fields: int = 0
    unreadable_inputs: int = 0
    action_lines: int = 0
    death_lines: int = 0
    filtered_lines: int = 0

    def to_json_dict(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "request_lines": self.request_lines,
            "allocation_lines": self.allocation_lines,
            "lifecycle_lines": self.lifecycle_lines,
            "action_lines": self.action_lines,
            "death_lines": self.death_lines,
            "filtered_lines": self.filtered_lines,
            "skipped_lines": self.skipped_lines,
            "malformed_lines": self.malformed_lines,
            "oversized_lines": self.oversized_lines,
            "invalid_records": self.invalid_records,
            "invalid_fields": self.invalid_fields,
            "unreadable_inputs": self.unreadable_inputs,
        }
