"""Public entry point: the names of :mod:`memwarden.export.newrelic`, importable from
here as before."""

from memwarden.export.newrelic import (
    ATTRIBUTES,
    CENSUS_PREFIX,
    EVENT_ACTIONS,
    EVENT_ATTRIBUTES,
    EVENT_TYPE,
    METRICS,
    active,
    census_metric_name,
    check_extra,
    post_worker_init,
    start_worker,
    wrap_app,
)

__all__ = [
    "ATTRIBUTES",
    "CENSUS_PREFIX",
    "EVENT_ACTIONS",
    "EVENT_ATTRIBUTES",
    "EVENT_TYPE",
    "METRICS",
    "active",
    "census_metric_name",
    "check_extra",
    "post_worker_init",
    "start_worker",
    "wrap_app",
]
