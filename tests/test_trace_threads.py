"""One cached model, many browser sessions: traces and CAMs of different images from several threads at once give
exactly what running them one at a time gives, for both models, and leave the shared model untouched."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from fgvc_core.explain.attribution.cam import stage_cams
from fgvc_core.explain.attribution.vit_cam import rams_trans_cam
from fgvc_core.ops.rollout import gradient_rollout
from tests.app_fixtures import CRA_SIZE, RAMS_SIZE, tiny_cra, tiny_rams

IMAGES = 8  # a multiple of WORKERS (the barrier releases full groups)
WORKERS = 4


def tensors(value: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    """Every tensor/array inside a trace (dataclasses, tuples, dicts), with a path-like name."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        yield name, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from tensors(getattr(value, f.name), f"{name}.{f.name}")
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from tensors(sub, f"{name}[{key}]")
    elif isinstance(value, (tuple, list)):
        for i, sub in enumerate(value):
            yield from tensors(sub, f"{name}[{i}]")


def assert_same(a: Any, b: Any) -> None:
    left, right = dict(tensors(a)), dict(tensors(b))
    assert left.keys() == right.keys() and left
    for key in left:
        x, y = torch.as_tensor(left[key]), torch.as_tensor(right[key])
        assert x.shape == y.shape and torch.equal(x, y), key


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    assert all(p.grad is None for p in model.parameters())


def run_both_ways(job: Callable[[torch.Tensor], Any], images: torch.Tensor) -> None:
    sequential = [job(x) for x in images]
    # Every group of WORKERS jobs waits at the barrier until all of them have started, so they really overlap.
    barrier = threading.Barrier(WORKERS)

    def together(x: torch.Tensor) -> Any:
        barrier.wait(timeout=60)
        return job(x)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        order = list(range(len(images)))[::2] + list(range(len(images)))[1::2]
        futures = {i: pool.submit(together, images[i]) for i in order}
        concurrent = [futures[i].result() for i in range(len(images))]
    for one, other in zip(sequential, concurrent):
        assert_same(one, other)


@pytest.fixture(scope="module")
def rams():
    return tiny_rams(0)


@pytest.fixture(scope="module")
def cra():
    return tiny_cra(0)


def test_rams_trans_traces_rollouts_and_cams_from_threads(rams):
    images = torch.randn(IMAGES, 1, 3, RAMS_SIZE, RAMS_SIZE, generator=torch.Generator().manual_seed(1))
    before = snapshot(rams)

    def job(x: torch.Tensor) -> dict[str, Any]:
        base = rams.trace(x)
        moved = rams.trace(None, threshold=0.9, head_fusion="max", cache=base.cache)  # the slider path
        attentions, gradients, classes = rams.attention_gradients(x, target=1)
        return {
            "base": base,
            "moved": moved,
            "gradient_rollout": gradient_rollout(attentions, gradients),
            "classes": classes,
            "cam": rams_trans_cam(rams, x, target=2),
        }

    run_both_ways(job, images)
    assert_untouched(rams, before)


def test_cra_smra_traces_and_stage_cams_from_threads(cra):
    images = torch.randn(IMAGES, 1, 3, CRA_SIZE, CRA_SIZE, generator=torch.Generator().manual_seed(2))
    before = snapshot(cra)

    def job(x: torch.Tensor) -> dict[str, Any]:
        base = cra.trace(x)
        moved = cra.trace(x, delta=0.6, omega=0.2, cache=base.cache)  # the slider path
        return {
            "base": dataclasses.replace(base, cache=None),  # the cache holds the stage-3 tensor; compared below
            "stage3": base.cache.stage3,
            "moved": dataclasses.replace(moved, cache=None),
            "cams": stage_cams(cra, x, target_class=1, method="gradcam", delta=0.6),
            "finercam": stage_cams(cra, x, method="finercam"),
        }

    run_both_ways(job, images)
    assert_untouched(cra, before)


def test_a_cache_from_another_image_is_refused_not_mixed(cra):
    from fgvc_core.errors import ConfigError

    a, b = torch.randn(2, 1, 3, CRA_SIZE, CRA_SIZE, generator=torch.Generator().manual_seed(3))
    cache = cra.trace(a).cache
    with pytest.raises(ConfigError):
        cra.trace(b, delta=0.5, cache=cache)
