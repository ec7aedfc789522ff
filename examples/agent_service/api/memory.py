"""Mem0, set up for this service: local models, qdrant, SQLite history, nothing off-host.

:func:`new_memory` builds a ``mem0.Memory`` with ``Memory.from_config``:

- the embedder and the LLM are OpenAI-compatible clients of the model
  endpoint beside the MCP server (``AGENT_SERVICE_MODEL_URL``,
  ``tooling.model_server``): deterministic vectors from a hash of the text;
  the service adds with ``infer=False``, so the chat model is not called;
- the vector store is qdrant: in this process's memory (``where=None``, as
  found), on disk under a directory, or a qdrant server at
  ``AGENT_SERVICE_QDRANT_URL``;
- the history is Mem0's SQLite table, in memory or in a file.

Mem0 reads ``MEM0_TELEMETRY`` when it is imported and would otherwise send
usage events (PostHog) and fetch notices (GitHub) from the internet; this
module turns it off before the import, whatever the environment says, and
again in Mem0's modules after it, for code that imported mem0 first. It
points ``MEM0_DIR`` (which Mem0 creates at import) at the service's data
directory.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from api import config

__all__ = ["COLLECTION", "DIMENSIONS", "mem0_config", "new_memory"]

COLLECTION = "agent_context"
DIMENSIONS = 384  # what tooling.model_server answers
# The model endpoint checks nothing; the OpenAI client insists on some key.
_API_KEY = "local-no-key"
# Optional parts Mem0 looks for and reports missing on every start (spaCy,
# fastembed for BM25): the service uses neither.
_QUIET_LOGGERS = ("mem0.vector_stores.qdrant", "mem0.utils.spacy_models")


def _prepare_import(cfg: config.Settings) -> None:
    os.environ["MEM0_TELEMETRY"] = "False"
    mem0_dir = Path(cfg.data_dir) / "mem0"
    mem0_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MEM0_DIR", str(mem0_dir))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _telemetry_off() -> None:
    # Each module keeps its own copy of the flag read at import (main.py imports
    # the name; telemetry.py and notices.py read the module's global).
    from mem0.memory import main, telemetry

    telemetry.MEM0_TELEMETRY = False
    main.MEM0_TELEMETRY = False  # type: ignore[attr-defined]


def mem0_config(cfg: config.Settings, where: Path | None) -> dict[str, Any]:
    """The ``Memory.from_config`` dict: in memory (``where`` None) or under ``where``."""
    model = {"api_key": _API_KEY, "openai_base_url": cfg.model_url}
    vector: dict[str, Any] = {"collection_name": COLLECTION, "embedding_model_dims": DIMENSIONS}
    if cfg.qdrant_url is not None and where is not None:
        url = urlsplit(cfg.qdrant_url)
        vector.update(host=url.hostname, port=url.port, https=False)
    elif where is not None:
        vector.update(path=str(where / "qdrant"), on_disk=True)
    else:
        from qdrant_client import QdrantClient

        # ":memory:": every point in this process, as the service was found.
        vector["client"] = QdrantClient(location=":memory:")
    return {
        "vector_store": {"provider": "qdrant", "config": vector},
        "embedder": {"provider": "openai",
                     "config": {**model, "model": "hash-embedding-384",
                                "embedding_dims": DIMENSIONS}},
        "llm": {"provider": "openai", "config": {**model, "model": "fixed-chat"}},
        "history_db_path": str(where / "history.sqlite") if where is not None else ":memory:",
    }


def new_memory(cfg: config.Settings, where: Path | None = None) -> Any:
    """A ``mem0.Memory``: in this process's memory, or kept under ``where``."""
    _prepare_import(cfg)
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
    from mem0 import Memory

    _telemetry_off()
    with warnings.catch_warnings():
        # Local qdrant says payload indexes do nothing there; Mem0 makes them anyway.
        warnings.filterwarnings("ignore", message="Payload indexes have no effect",
                                category=UserWarning)
        return Memory.from_config(mem0_config(cfg, where))
