"""`memwarden analyze` at fleet scale: time and peak memory over millions of lines.

Generates (untimed) ``--lines`` request lines from ``--workers`` gunicorn
workers into a temporary file: each worker's life ends after 8,000 to 16,000
requests (``--life``: gunicorn's ``max_requests`` with jitter) with a
``recycle`` line and a new pid takes its place; 30% of the lives leak
(every ``POST /chat`` call keeps 40 allocated blocks). Lines carry the
fields of a real request line, and a census every 50 requests.

Then, each in a child process that reports its own peak RSS
(``resource.getrusage``):

- baseline: decode every line with the standard json module (``json.loads``);
- candidate: ``memwarden analyze``'s pass over the same file, as the command runs it
  by default: one process reads while one per available CPU judges the worker
  lives (``judges``); peak RSS is the reading process's plus the largest judge's;
- the candidate again over twice the lines (the file's content twice, with
  other pids and later timestamps): peak RSS must not grow with lines;
- for the choice of scan engine: msgspec and orjson decoding alone, and
  DuckDB reading the same NDJSON natively and handing its rows to Python,
  each when installed.

It checks that the leaking lives are the ones called leak and that the
suspects name the leaking route. The last line:
``lines=N seconds=S ratio_to_json_decode=R peak_rss_mib=M peak_rss_mib_at_10m=M2``
(M2 is measured over twice ``--lines``: 10,000,000 by default).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROUTES = (("GET", "/health", 10), ("GET", "/items/<id>", 30), ("POST", "/chat", 25),
          ("GET", "/search", 15), ("POST", "/upload", 5), ("GET", "/", 15))
LEAK_ROUTE = "POST /chat"
LEAK_BLOCKS = 40
LEAK_SHARE = 0.3
CENSUS_EVERY = 50
FINISHED: set[int] = set()  # leaking lives that reached their recycle line


def _route_table() -> list[tuple[str, str]]:
    table = []
    for method, route, weight in ROUTES:
        table += [(method, route)] * weight
    return table


def generate(path: Path, lines: int, workers: int, seed: int, pid_base: int = 10_000,
             second_base: int = 0, lengths: tuple[int, int] = (8000, 16000)) -> set[int]:
    """Write the log; return the pids of the leaking lives (FINISHED gets those that ended)."""
    rng = random.Random(seed)
    table = _route_table()
    leaking: set[int] = set()
    next_pid = pid_base
    slots = []
    for _ in range(workers):
        slots.append(_new_life(rng, next_pid, leaking, lengths))
        next_pid += 1
    written = 0
    with path.open("w", encoding="utf-8") as out:
        buffer: list[str] = []
        while written < lines:
            slot = rng.randrange(workers)
            life = slots[slot]
            seconds = second_base + written // 2000
            stamp = (f"2026-11-{1 + seconds // 86400:02d}T{seconds // 3600 % 24:02d}:"
                     f"{seconds // 60 % 60:02d}:{seconds % 60:02d}.{written % 1000:03d}Z")
            if life["seq"] >= life["length"]:
                if life["leaks"]:
                    FINISHED.add(life["pid"])
                buffer.append(
                    f'{{"timestamp": "{stamp}", "level": "INFO", "logger": "memwarden.recycle",'
                    f' "message": "recycle", "pid": {life["pid"]}, "reason": "max_requests",'
                    f' "footprint_bytes": {life["rss"]}, "limit_bytes": 2147483648,'
                    f' "requests": {life["seq"]}}}\n')
                slots[slot] = _new_life(rng, next_pid, leaking, lengths)
                next_pid += 1
            else:
                buffer.append(_request(rng, life, table, stamp))
            written += 1
            if len(buffer) >= 10_000:
                out.write("".join(buffer))
                buffer.clear()
        out.write("".join(buffer))
    return leaking


def _new_life(rng: random.Random, pid: int, leaking: set[int],
              lengths: tuple[int, int]) -> dict[str, int]:
    leaks = rng.random() < LEAK_SHARE
    if leaks:
        leaking.add(pid)
    base = 60_000 + rng.randrange(5000)
    return {"pid": pid, "seq": 0, "length": rng.randint(*lengths), "leaks": int(leaks),
            "base": base, "kept": 0, "blocks": base, "rss": 90_000_000 + rng.randrange(10**6)}


def _request(rng: random.Random, life: dict[str, int], table: list[tuple[str, str]],
             stamp: str) -> str:
    life["seq"] += 1
    seq = life["seq"]
    method, route = table[rng.randrange(len(table))]
    # Temporary garbage comes and goes around the live heap; a leaking life
    # keeps LEAK_BLOCKS more for every chat call.
    if life["leaks"] and route == "/chat":
        life["kept"] += LEAK_BLOCKS
    blocks = life["base"] + life["kept"] + rng.randint(-300, 300)
    delta = blocks - life["blocks"]
    life["blocks"] = blocks
    rss_delta = delta * 64 if delta > 0 and rng.random() < 0.2 else 0
    life["rss"] += rss_delta
    status = 500 if rng.random() < 0.002 else 200
    line = (f'{{"timestamp": "{stamp}", "level": "INFO", "logger": "memwarden.request", '
            f'"message": "request", "request_id": "{rng.getrandbits(64):016x}", '
            f'"pid": {life["pid"]}, "seq": {seq}, "method": "{method}", "route": "{route}", '
            f'"status": {status}, "duration_ms": {rng.random() * 80:.3f}, '
            f'"rss_bytes": {life["rss"]}')
    if seq > 1:
        line += f', "rss_delta_bytes": {rss_delta}, "blocks_delta": {delta}'
    line += f', "blocks": {life["blocks"]}'
    if seq == 1 or seq % CENSUS_EVERY == 0:
        line += (f', "census": {{"threads": 4, "fds": {12 + rng.randrange(3)}, '
                 f'"blocks": {life["blocks"]}, "gc_full_collections": {seq // 700}}}')
    return line + "}\n"


def double(source: Path, target: Path, pid_shift: int) -> None:
    """The file's content twice: the second copy under other pids, a month later."""
    with source.open("rb") as src, target.open("wb") as out:
        for chunk in iter(lambda: src.read(1 << 24), b""):
            out.write(chunk)
        src.seek(0)
        for line in src:
            text = line.decode()
            pid_at = text.index('"pid": ') + 7
            end = pid_at
            while text[end].isdigit():
                end += 1
            text = (text[:pid_at] + str(int(text[pid_at:end]) + pid_shift) + text[end:])
            out.write(text.replace('"2026-11-', '"2026-12-', 1).encode())


# -- the measured parts, each in its own process --------------------------------------------


def child(kind: str, path: str) -> dict[str, object]:
    started = time.perf_counter()
    result: dict[str, object] = {}
    if kind == "json":
        loads = json.loads
        with open(path, "rb") as f:
            for line in f:
                loads(line)
    elif kind == "orjson":
        import orjson
        with open(path, "rb") as f:
            for line in f:
                orjson.loads(line)
    elif kind == "msgspec":
        import msgspec
        decode = msgspec.json.Decoder().decode
        with open(path, "rb") as f:
            for line in f:
                decode(line)
    elif kind == "lives":
        result.update(_short_lives(int(path)))
    elif kind == "duckdb":
        import duckdb
        con = duckdb.connect()
        cur = con.execute(
            "SELECT pid, seq, route, rss_bytes, blocks, blocks_delta FROM "
            "read_json(?, format='newline_delimited', ignore_errors=true)", [path])
        rows = 0
        while batch := cur.fetchmany(65536):
            rows += len(batch)
        result["rows"] = rows
    else:
        from memwarden.find.analysis.analyze import feed_paths, report_of
        from memwarden.find.analysis.judges import default_judges
        from memwarden.find.analysis.stream import StreamAnalysis
        # As `memwarden analyze` runs by default: lives judged by one process per CPU.
        stream = StreamAnalysis(judges=default_judges())
        result["judges"] = default_judges()
        feed_paths(stream, [path])
        fed = time.perf_counter()
        judged_while_reading = stream.judging_seconds
        report = report_of(stream)
        result["seconds"] = time.perf_counter() - started
        result["reading_seconds"] = fed - started - judged_while_reading
        result["judging_seconds"] = stream.judging_seconds
        result["judged_seconds"] = stream.judged_seconds
        result["lives"] = stream.tally.total
        from memwarden.find.report.html import render_html
        result["html_mib"] = len(render_html(report).encode()) / 2**20
        data = report.to_json_dict()
        result.update(verdict=report.verdict, lines=report.input.lines,
                      leak_pids=sorted(w.pid for w in report.workers if w.verdict == "leak"),
                      listed=len(report.workers), other=data["other_lives"],
                      suspects=[s.name for s in report.suspects[:3]],
                      reason=report.reason[:200])
    result.setdefault("seconds", time.perf_counter() - started)
    # The judges' processes count too: this process's peak plus the largest of theirs
    # (an upper bound, since they share pages with it).
    result["peak_rss_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                              + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    result["own_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_seconds"] = (usage.ru_utime + usage.ru_stime + children.ru_utime
                             + children.ru_stime)
    return result


def _short_lives(lives: int) -> dict[str, object]:
    """``lives`` worker lives of 10 requests each, streamed: the report's caps at work."""
    from memwarden.find.analysis.analyze import report_of
    from memwarden.find.analysis.stream import StreamAnalysis
    from memwarden.find.report.html import render_html
    started = time.perf_counter()
    stream = StreamAnalysis()
    for n in range(lives):
        pid = 100_000 + n
        for seq in range(1, 11):
            stream.add(
                f'{{"timestamp": "2026-11-28T01:00:00.000Z", "logger": "memwarden.request", '
                f'"message": "request", "pid": {pid}, "seq": {seq}, "method": "GET", '
                f'"route": "/r{seq % 3}", "status": 200, "duration_ms": 1.5, '
                f'"rss_bytes": {90_000_000 + seq * 4096}, "rss_delta_bytes": 4096, '
                f'"blocks": {60_000 + seq}, "blocks_delta": 1}}'.encode())
        stream.add(f'{{"logger": "memwarden.recycle", "message": "recycle", "pid": {pid}, '
                   f'"reason": "max_requests", "requests": 10}}'.encode())
    report = report_of(stream)
    seconds = time.perf_counter() - started
    return {"analysis_seconds": seconds, "lives": stream.tally.total,
            "listed": len(report.workers), "plotted": len(report.series),
            "html_mib": len(render_html(report).encode()) / 2**20,
            "json_mib": len(json.dumps(report.to_json_dict())) / 2**20}


def run_child(kind: str, path: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} child failed: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int,
                        default=int(os.environ.get("MEMWARDEN_BENCH_LINES", "5000000")))
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--life", default="8000:16000", metavar="LOW:HIGH",
                        help="requests per worker life")
    parser.add_argument("--short-lives", type=int, default=0, metavar="N",
                        help="instead: N worker lives of 10 requests each (the report's caps)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    if args.short_lives:
        got = run_child("lives", Path(str(args.short_lives)))
        print(f"lives={got['lives']} seconds={float(got['analysis_seconds']):.1f} "
              f"listed={got['listed']} plotted={got['plotted']} "
              f"html_mib={float(got['html_mib']):.2f} json_mib={float(got['json_mib']):.2f} "
              f"peak_rss_mib={float(got['peak_rss_mib']):.0f}")
        return 0
    with tempfile.TemporaryDirectory(prefix="memwarden-scale-") as tmp:
        path, twice = Path(tmp) / "fleet.log", Path(tmp) / "fleet2.log"
        started = time.monotonic()
        low, _, high = args.life.partition(":")
        leaking = generate(path, args.lines, args.workers, args.seed,
                           lengths=(int(low), int(high or low)))
        double(path, twice, pid_shift=10_000_000)
        size = path.stat().st_size
        print(f"generated {args.lines:,} lines ({size / 2**20:.0f} MiB) and twice that in "
              f"{time.monotonic() - started:.0f} s (untimed); {len(leaking)} leaking lives")
        base = run_child("json", path)
        print(f"baseline json.loads per line: {base['seconds']:.1f} s, "
              f"peak {base['peak_rss_mib']:.0f} MiB")
        for kind in ("msgspec", "orjson", "duckdb"):
            try:
                other = run_child(kind, path)
            except SystemExit as exc:
                print(f"{kind}: not measured ({str(exc).splitlines()[-1][:120]})")
                continue
            print(f"scan engine {kind}: {other['seconds']:.1f} s "
                  f"(ratio {float(other['seconds']) / float(base['seconds']):.2f}), "
                  f"peak {other['peak_rss_mib']:.0f} MiB")
        one = run_child("analyze", path)
        two = run_child("analyze", twice)
        print(f"analyze: {one['seconds']:.1f} s ({float(one['cpu_seconds']):.1f} s of CPU), "
              f"peak {one['peak_rss_mib']:.0f} MiB (reading process "
              f"{float(one['own_peak_rss_mib']):.0f} MiB and the largest of its "
              f"{one['judges']} judges), verdict {one['verdict']}; {one['listed']} lives "
              f"listed, other {one['other']}; HTML report {float(one['html_mib']):.1f} MiB "
              f"(not timed)")
        rest = (float(one["seconds"]) - float(one["judging_seconds"])
                - float(one["reading_seconds"]))
        print(f"of which reading the lines {float(one['reading_seconds']):.1f} s, waiting for "
              f"the judges {float(one['judging_seconds']):.1f} s, suspects and report "
              f"{rest:.1f} s; judging the {one['lives']} worker lives (the trend tests) took "
              f"{float(one['judged_seconds']):.1f} s in the judges")
        print(f"analyze over twice the lines: {two['seconds']:.1f} s, "
              f"peak {two['peak_rss_mib']:.0f} MiB (reading process "
              f"{float(two['own_peak_rss_mib']):.0f} MiB)")
        listed_leaks = set(one["leak_pids"])  # type: ignore[call-overload]
        other_leaks = one["other"]["verdicts"].get("leak", 0)  # type: ignore[index]
        called = len(listed_leaks) + other_leaks
        # Lives still running when the log ends may be too short to judge; every
        # leaking life that ran to its recycle must be called leak.
        found = (one["verdict"] == "leak" and listed_leaks <= leaking
                 and called >= len(FINISHED)
                 and bool(one["suspects"]) and one["suspects"][0] == LEAK_ROUTE)  # type: ignore[index]
        print(f"leaking lives found: {'yes' if found else 'NO'} ({called} lives called leak; "
              f"{len(leaking)} leak, {len(FINISHED)} of them ran to their recycle; the "
              f"{len(listed_leaks)} listed as leak all leak; top suspects {one['suspects']})")
        ratio = float(one["seconds"]) / float(base["seconds"])
        print(f"lines={args.lines} seconds={float(one['seconds']):.1f} "
              f"ratio_to_json_decode={ratio:.2f} peak_rss_mib={float(one['peak_rss_mib']):.0f} "
              f"peak_rss_mib_at_10m={float(two['peak_rss_mib']):.0f}")
        return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
