"""What each of memwarden's optional settings costs per request, under real gunicorn.

The same hello-world apps, servers and wrk load as throughput.py (2 workers,
10 connections, rounds interleaved). The reference is memwarden's defaults;
each other variant changes one thing: the census on every request, the PSS
footprint for recycling, tracemalloc windows, allocated blocks on every
request (the defaults read them on every 16th and whenever RSS moved),
gunicorn's own logger class in place of memwarden's (Flask), and loop
tracking (FastAPI). Reported per variant: median req/s and its ratio to the
defaults', and the server's CPU per request (master and workers, user and
system) with what it adds to the defaults' (steadier than req/s on a shared
machine).

Last line: ``census_every_1_us=A pss_us=B tracemalloc_us=C blocks_every_1_us=D
gunicorn_logger_us=E loop_tracking_us=F`` (CPU microseconds per request added to
memwarden's defaults; negative: saved).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from throughput import SUMMARY_LUA, Server, Variant, load_round, report, running, wrk

# memwarden.gunicorn_conf sets memwarden's logger class; this puts gunicorn's back.
GUNICORN_LOGGER = ("--logger-class", "gunicorn.glogging.Logger")
DEFAULTS = Variant("defaults", "bare", memwarden=True)
# name in the last line -> the variant
FLASK = {
    "census_every_1": Variant("census", "bare", True, (("MEMWARDEN_CENSUS_EVERY", "1"),)),
    "pss": Variant("pss", "bare", True, (("MEMWARDEN_FOOTPRINT", "pss"),)),
    "tracemalloc": Variant("tracemalloc", "bare", True, (("MEMWARDEN_TRACEMALLOC", "1"),)),
    "blocks_every_1": Variant("blocks1", "bare", True, (("MEMWARDEN_BLOCKS_EVERY", "1"),)),
    "gunicorn_logger": Variant("gunicornlogger", "bare", True, args=GUNICORN_LOGGER),
}
FASTAPI = {
    "loop_tracking": Variant("loops", "bare", True, (("MEMWARDEN_LOOP_TRACKING", "1"),)),
}


def measure(work: Path, family: str, variants: dict[str, Variant], rounds: int, seconds: int
            ) -> dict[str, float]:
    """CPU microseconds per request each variant adds to the defaults'."""
    script = work / "summary.lua"
    script.write_text(SUMMARY_LUA)
    servers = [Server(family, v, work / f"{family}-{v.name}.log")
               for v in (DEFAULTS, *variants.values())]
    with running(servers):
        for server in servers:  # warm-up: first census, tracemalloc's start
            wrk(server.url(), 1, script)
        for _ in range(rounds):
            for server in servers:
                load_round(server, seconds, script)
    report(family, servers)
    base = statistics.median(servers[0].cpu_us)
    return {name: statistics.median(server.cpu_us) - base
            for name, server in zip(variants, servers[1:], strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4, help="wrk run per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mw-costs-") as tmp:
        work = Path(tmp)
        print(f"rounds={args.rounds} seconds={args.seconds}; ratios and +cpu against "
              "memwarden's defaults")
        added = measure(work, "flask", FLASK, args.rounds, args.seconds)
        added |= measure(work, "fastapi", FASTAPI, args.rounds, args.seconds)
    print(" ".join(f"{name}_us={us:.0f}" for name, us in added.items()))


if __name__ == "__main__":
    main()
