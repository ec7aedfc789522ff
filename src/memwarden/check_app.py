"""Whether a gunicorn app uses asyncio, without importing it.

Read from the worker class (uvicorn's and other ASGI workers run an event
loop) and from the app module's source: its imports, parsed, not run, so that
``memwarden check`` and the master's start summary never execute app code.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

__all__ = ["ASYNC_MODULES", "asyncio_use"]

# Importing one of these means an event loop runs in the worker.
ASYNC_MODULES = ("asyncio", "fastapi", "starlette", "quart", "aiohttp", "anyio", "uvicorn")


def _is_asgi_class(worker_class: str) -> bool:
    name = worker_class.lower()
    return "uvicorn" in name or "asgi" in name


def _module_source(module: str, search: list[str]) -> str | None:
    # Found by path, not importlib.util.find_spec: that imports the parent
    # packages of a dotted name, which would run app code.
    parts = module.split(".")
    for base in [*search, *(p or "." for p in sys.path)]:
        root = Path(base, *parts)
        for candidate in (root.with_suffix(".py"), root / "__init__.py"):
            try:
                return candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return None


def _async_import(source: str) -> str | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            top = name.partition(".")[0]
            if top in ASYNC_MODULES:
                return top
    return None


def asyncio_use(worker_class: str, app: str | None, search: list[str] | None = None
                ) -> str | None:
    """Why the app uses asyncio (``worker class uvicorn_worker.UvicornWorker``,
    ``app module main imports fastapi``), or None when nothing says so.
    ``app`` is gunicorn's ``module:attr``; ``search`` adds import paths."""
    if _is_asgi_class(worker_class):
        return f"worker class {worker_class}"
    if not app:
        return None
    module = app.partition(":")[0].strip()
    if not module or module.startswith("."):
        return None
    source = _module_source(module, search or [])
    found = _async_import(source) if source is not None else None
    return f"app module {module} imports {found}" if found else None
