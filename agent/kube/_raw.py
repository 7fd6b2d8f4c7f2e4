"""Plain JSON from the Kubernetes client, whose typed models drop managedFields detail and
rename keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

APPLY_PATCH = "application/apply-patch+yaml"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


def raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Calls a client method without deserialising and returns the JSON object it answered."""
    response = call(*args, _preload_content=False, **kwargs)
    data = json.loads(response.data or b"{}")
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(data).__name__}")
    return data
