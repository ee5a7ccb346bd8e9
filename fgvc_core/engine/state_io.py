"""Nested training state (optimizer, scheduler, RNG) <-> safetensors + JSON, so that nothing is ever unpickled.

``flatten_state`` walks dicts/lists/tuples, moves every tensor into a flat ``{key: tensor}`` mapping and leaves a
JSON-able skeleton with ``{"__tensor__": key}`` placeholders; ``unflatten_state`` puts them back. Integer dict keys
(optimizer state is keyed by parameter index) survive the JSON round trip through an explicit marker.
"""

from __future__ import annotations

from typing import Any

import torch

from fgvc_core.errors import CheckpointError

_MAX_DEPTH = 64  # optimizer state is ~5 levels deep
_TENSOR = "__tensor__"
_INT_KEYS = "__int_keys__"
_TUPLE = "__tuple__"


def flatten_state(obj: Any, prefix: str = "s") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split ``obj`` into (JSON-able skeleton, flat tensors). Raises TypeError on values JSON cannot hold."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(value, dict):
            int_keys = all(isinstance(k, int) for k in value) and bool(value)
            if not int_keys and not all(isinstance(k, str) for k in value):
                raise TypeError(f"state dict keys at {path} must be all str or all int")
            out = {str(k): walk(v, f"{path}.{k}") for k, v in value.items()}
            if int_keys:
                out[_INT_KEYS] = True
            return out
        if isinstance(value, (list, tuple)):
            items = [walk(v, f"{path}.{i}") for i, v in enumerate(value)]
            return {_TUPLE: items} if isinstance(value, tuple) else items
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} at {path} without pickling")

    return walk(obj, prefix), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor], source: str = "training state") -> Any:
    """Inverse of :func:`flatten_state`.

    The skeleton comes from a sidecar, which is untrusted: a placeholder naming no tensor, an integer-keyed dict
    with other keys, or nesting deeper than any real optimizer state is a :class:`CheckpointError`.
    """

    def walk(node: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"{source}: the state structure is nested deeper than {_MAX_DEPTH} levels")
        if isinstance(node, list):
            return [walk(v, depth + 1) for v in node]
        if not isinstance(node, dict):
            return node
        if _TENSOR in node:
            key = node[_TENSOR]
            if not isinstance(key, str) or key not in tensors:
                raise CheckpointError(f"{source} holds no tensor {str(key)[:60]!r} that its structure refers to")
            return tensors[key]
        if _TUPLE in node:
            if not isinstance(node[_TUPLE], list):
                raise CheckpointError(f"{source}: a stored tuple is not a list")
            return tuple(walk(v, depth + 1) for v in node[_TUPLE])
        int_keys = node.get(_INT_KEYS, False)
        items = [(k, v) for k, v in node.items() if k != _INT_KEYS]
        if int_keys and not all(k.lstrip("-").isdigit() for k, _ in items):
            raise CheckpointError(f"{source}: an integer-keyed entry has keys that are not integers")
        return {(int(k) if int_keys else k): walk(v, depth + 1) for k, v in items}

    return walk(skeleton, 0)
