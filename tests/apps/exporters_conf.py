"""gunicorn config for the exporter tests: memwarden's config plus the exporter hooks,
chained the way memwarden.gunicorn_conf is meant to call them."""

from memwarden import exporters as _exporters
from memwarden import gunicorn_conf as _base
from memwarden.gunicorn_conf import logconfig_dict, memwarden_settings  # noqa: F401

_exporters.setup_master(memwarden_settings)


def on_starting(server):  # type: ignore[no-untyped-def]
    _exporters.on_starting(server, memwarden_settings)


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    _base.post_fork(server, worker)
    _exporters.post_fork(server, worker, memwarden_settings)


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    _base.post_worker_init(worker)
    _exporters.post_worker_init(worker, memwarden_settings)


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    _exporters.worker_exit(server, worker)
    _base.worker_exit(server, worker)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    _base.child_exit(server, worker)
    _exporters.child_exit(server, worker)


def on_exit(server):  # type: ignore[no-untyped-def]
    _exporters.on_exit(server)
