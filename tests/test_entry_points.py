"""The import paths users have (README, docs, examples) name the same objects
as the modules that hold them."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "memwarden.wsgi": "memwarden.see.wsgi",
    "memwarden.asgi": "memwarden.see.asgi",
    "memwarden.census": "memwarden.see.census",
    "memwarden.context": "memwarden.see.context",
    "memwarden.pool": "memwarden.hold.pool",
    "memwarden.loop": "memwarden.hold.loop",
    "memwarden.exporters": "memwarden.export",
    "memwarden.exporters.prometheus": "memwarden.export.prometheus",
    "memwarden.exporters.newrelic": "memwarden.export.newrelic",
}


@pytest.mark.parametrize(("public", "home"), sorted(PUBLIC.items()))
def test_public_path_names_the_same_objects(public: str, home: str) -> None:
    entry, module = importlib.import_module(public), importlib.import_module(home)
    assert entry.__all__ == module.__all__ and len(module.__all__) > 0
    assert [name for name in module.__all__
            if getattr(entry, name) is not getattr(module, name)] == []


def test_documented_names_are_where_the_docs_say() -> None:
    from memwarden.asgi import AsgiMemoryTracker
    from memwarden.events import Recycle, Shed, publish
    from memwarden.exporters import declare_pool, set_worker_limit, setup_master
    from memwarden.exporters.prometheus import MemwardenCollector, make_registry
    from memwarden.hook_check import replaced_hooks
    from memwarden.pool import Pool
    from memwarden.wsgi import MemoryTracker

    assert {f.__module__ for f in (declare_pool, set_worker_limit, setup_master)} \
        == {"memwarden.export"}
    assert {f.__module__ for f in (Recycle, Shed, publish)} == {"memwarden.events"}
    assert MemwardenCollector.__module__ == make_registry.__module__ \
        == "memwarden.export.prom_collect"
    assert MemoryTracker.__module__ == "memwarden.see.wsgi"
    assert AsgiMemoryTracker.__module__ == "memwarden.see.asgi"
    assert Pool.__module__ == "memwarden.hold.pool"
    assert replaced_hooks.__module__ == "memwarden.hook_check"
