"""What memwarden's New Relic exporter adds to a request already under the agent.

The same Flask hello-world request as overhead.py, under memwarden's tracker,
with the New Relic agent in developer mode (nothing leaves the process; the
cloud metadata probes are off). Baseline: the agent's WSGI wrapper inside
the tracker, as the agent's gunicorn instrumentation places it, and the
exporter off. Candidate: the exporter on, as in a worker: the agent's wrapper
outermost (the transaction spans the tracker) and memwarden's figures added
to each transaction. Rounds alternate between the two.

Last line: ``baseline_us=X newrelic_us=Y added_us=Y-X ratio=Y/X``.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

INI = """[newrelic]
app_name = memwarden-benchmark
developer_mode = true
log_level = warning
utilization.detect_aws = false
utilization.detect_azure = false
utilization.detect_azurefunction = false
utilization.detect_azureappservice = false
utilization.detect_gcp = false
utilization.detect_pcf = false
utilization.detect_docker = false
utilization.detect_kubernetes = false
"""


def start_agent(directory: Path) -> None:
    import newrelic.agent
    from newrelic.common import system_info

    ini = directory / "newrelic.ini"
    ini.write_text(INI)
    # The agent learns its address by a UDP connect to 1.1.1.1; given instead.
    system_info._nr_cached_ip_address = ["127.0.0.1"]
    newrelic.agent.initialize(str(ini))
    newrelic.agent.register_application(timeout=10.0)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="memwarden-newrelic-") as tmp:
        start_agent(Path(tmp))
        from newrelic.api.wsgi_application import WSGIApplicationWrapper
        from overhead import arguments, bare_and_tracked, time_round

        from memwarden.export import newrelic as exporter
        from memwarden.see import meter
        from memwarden.see.wsgi import MemoryTracker
        from memwarden.settings import Settings

        args = arguments(__doc__.splitlines()[0], rounds=21)
        bare, _ = bare_and_tracked()
        baseline = MemoryTracker(WSGIApplicationWrapper(bare), Settings())
        assert exporter.start_worker(Settings())
        candidate = exporter.wrap_app(baseline, asgi=False)
        samples: dict[str, list[float]] = {"baseline": [], "newrelic": []}

        def run(name: str, n: int) -> float:
            if name == "newrelic":
                meter.add_observer(exporter._observe)
                try:
                    return time_round(candidate, n)
                finally:
                    meter.remove_observer(exporter._observe)
            return time_round(baseline, n)

        meter.remove_observer(exporter._observe)  # on only in its own rounds
        for name in samples:  # warm-up: imports, caches, the first census
            run(name, 500)
        for _ in range(args.rounds):
            for name in samples:
                samples[name].append(run(name, args.requests))
        us = {name: [v * 1e6 for v in values] for name, values in samples.items()}
        base = statistics.median(us["baseline"])
        new = statistics.median(us["newrelic"])
        print(f"rounds={args.rounds} requests_per_round={args.requests}")
        for name, values in us.items():
            print(f"{name:10s} {statistics.median(values):8.2f} us/request "
                  f"(min {min(values):.2f}, max {max(values):.2f})")
        print(f"baseline_us={base:.2f} newrelic_us={new:.2f} added_us={new - base:.2f} "
              f"ratio={new / base:.3f}")


if __name__ == "__main__":
    main()
