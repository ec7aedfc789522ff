"""The printed summary names the verdict, its reason, the workers and the suspects."""

from __future__ import annotations

from memwarden.find.analysis import analyze_lines, render_text
from memwarden.find.analysis.units import format_bytes, format_count, format_signed_bytes
from memwarden.hold import perform as actions

from .real_actions import as_worker, shed_lines
from .synthetic import Route, SyntheticWorker, to_lines


def test_summary_lists_workers_verdict_and_ranked_suspects() -> None:
    routes = (Route("GET", "/a"), Route("POST", "/chat", leak_bytes=20_000))
    text = render_text(analyze_lines(to_lines(SyntheticWorker(seed=1, routes=routes).run(400))))
    assert "pid 4121: 400 requests (seq 1-400)" in text
    assert "Verdict: LEAK" in text
    assert "  1. route POST /chat:" in text
    assert text.index("Workers") < text.index("Verdict") < text.index("Suspects")
    assert text.isascii()


def test_units() -> None:
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(512) == "512 B"
    assert format_signed_bytes(10 * 1024) == "+10.0 KiB"
    assert format_signed_bytes(-4) == "-4 B"
    assert format_count(160.24) == "160"
    assert format_count(3.0) == "3"
    assert format_count(0.0123) == "0.012"


def test_summary_says_what_memwarden_did_and_would_have_done_only_when_it_did() -> None:
    requests = SyntheticWorker(seed=1).run(200)
    quiet = render_text(analyze_lines(to_lines(requests)))
    assert "Protective actions" not in quiet and "would" not in quiet
    sheds = as_worker(shed_lines(actions.DRY_RUN, 12), 4121)
    text = render_text(analyze_lines(to_lines(requests[:100] + sheds + requests[100:])))
    assert ("\nProtective actions (dry-run: logged, not done)\n  would shed 12 requests\n"
            "  also logged: shedding_started 1 (by signal: footprint 1)\n") in text
