"""Public entry point for gunicorn configs of your own and for code that reports
protective actions: the names of :mod:`memwarden.export`, importable from here
as before."""

from memwarden.export import (
    MissingExtraError,
    check_extras,
    child_exit,
    declare_pool,
    on_exit,
    on_starting,
    post_fork,
    post_worker_init,
    record_oom_kill,
    record_pool_refusal,
    record_recycle,
    record_shed,
    record_would_pool_refusal,
    record_would_recycle,
    record_would_shed,
    require,
    set_worker_limit,
    setup_master,
    worker_exit,
)

__all__ = [
    "MissingExtraError",
    "check_extras",
    "child_exit",
    "declare_pool",
    "on_exit",
    "on_starting",
    "post_fork",
    "post_worker_init",
    "record_oom_kill",
    "record_pool_refusal",
    "record_recycle",
    "record_shed",
    "record_would_pool_refusal",
    "record_would_recycle",
    "record_would_shed",
    "require",
    "set_worker_limit",
    "setup_master",
    "worker_exit",
]
