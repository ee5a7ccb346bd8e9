"""Nested training state (optimizer, scheduler, RNG) <-> safetensors + JSON, so that nothing is ever unpickled.

``flatten_state`` walks dicts/lists/tuples, moves every tensor into a flat ``{key: tensor}`` mapping and leaves a
JSON-able skeleton with ``{"__tensor__": key}`` placeholders; ``unflatten_state`` puts them back. Integer dict keys
(optimizer state is keyed by parameter index) survive the JSON round trip through an explicit marker.
"""

from __future__ import annotations

from typing import Any

import torch

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


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if _TUPLE in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton[_TUPLE])
        int_keys = skeleton.get(_INT_KEYS, False)
        return {(int(k) if int_keys else k): unflatten_state(v, tensors) for k, v in skeleton.items() if k != _INT_KEYS}
    return skeleton
