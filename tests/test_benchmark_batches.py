"""The one sampling of benchmark images that the explanation metrics and the app's δ sweep share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fgvc_core
from fgvc_core.app import sweeps
from fgvc_core.explain.scoring import metrics
from fgvc_core.explain.scoring.evaluation import benchmark_batches, sample_indices
from tests.engine_fixtures import write_tiny_benchmark

# A centre crop, so the part boxes really move from image pixels to input pixels.
PREPROCESS = {"resize": 40, "img_size": 32, "crop": "center", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def test_sample_indices_are_evenly_spaced_or_all():
    assert sample_indices(5, None) == sample_indices(5, 5) == sample_indices(5, 9) == [0, 1, 2, 3, 4]
    assert sample_indices(16, 4) == [0, 5, 10, 15]  # first and last, spread across the class-sorted dataset
    assert sample_indices(16, 1) == [0]
    assert sweeps.sample_indices is sample_indices  # the δ sweep samples as the explanation metrics do


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = write_tiny_benchmark(tmp_path_factory.mktemp("bench"), per_class=3)
    return fgvc_core.build_dataset("synth", root, "test")


def test_benchmark_batches_equal_a_per_image_loading(benchmark):
    transform = fgvc_core.build_transform(PREPROCESS)
    order = sample_indices(len(benchmark), 5)
    batches = list(benchmark_batches(benchmark, PREPROCESS, order, batch_size=2))
    assert [b.start for b in batches] == [0, 2, 4] and [len(b.labels) for b in batches] == [2, 2, 1]
    for batch in batches:
        for row, i in enumerate(order[batch.start : batch.start + len(batch.labels)]):
            image, label = benchmark[i]
            ann = benchmark.annotation(i)
            torch.testing.assert_close(batch.x[row], transform(image), atol=0, rtol=0)
            assert int(batch.labels[row]) == label
            parts = metrics.part_boxes_to_input(ann.deciding_boxes.numpy(), image.size, PREPROCESS)
            np.testing.assert_allclose(batch.parts[row], parts)
            obj = metrics.part_boxes_to_input(np.asarray(ann.box, dtype=np.float64)[None], image.size, PREPROCESS)
            np.testing.assert_allclose(batch.objects[row], obj[0])
            assert bool(batch.keep[row]) == bool(metrics.has_part_boxes([parts])[0])
    assert sum(int(b.keep.sum()) for b in batches) > 0
