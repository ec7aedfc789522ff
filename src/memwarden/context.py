"""Public entry point: the names of :mod:`memwarden.see.context`, importable from
here as before."""

from memwarden.see.context import (
    BoundRequest,
    RequestId,
    current_private_texts,
    current_request_id,
    new_request_id,
    next_sequence,
    request_id_from,
    sanitize_request_id,
)

__all__ = [
    "BoundRequest",
    "RequestId",
    "current_private_texts",
    "current_request_id",
    "new_request_id",
    "next_sequence",
    "request_id_from",
    "sanitize_request_id",
]
