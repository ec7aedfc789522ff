"""Public entry point: the names of :mod:`memwarden.export.prometheus`, importable from
here as before."""

from memwarden.export.prometheus import (
    METRICS,
    MemwardenCollector,
    compact,
    main,
    make_registry,
    mark_worker_dead,
    master_exit,
    metrics_route,
    setup_master,
    start_server_process,
    start_worker,
    stop_server_process,
)

__all__ = [
    "METRICS",
    "MemwardenCollector",
    "compact",
    "main",
    "make_registry",
    "mark_worker_dead",
    "master_exit",
    "metrics_route",
    "setup_master",
    "start_server_process",
    "start_worker",
    "stop_server_process",
]
