"""The training stream never repeats an image across epochs (a fixed few thousand images get memorised)."""

from __future__ import annotations

import torch

from fgvc_core.data.synth import SynthStream
from fgvc_core.data.transforms import preprocess_config
from fgvc_core.engine.data import train_loader


def test_windows_are_fresh_balanced_and_deterministic():
    stream = SynthStream(num_samples=12, num_classes=4, size=32, seed=3)
    first, second = stream.window(0), stream.window(1)
    assert stream.offset == 0 and second.offset == 12  # the original is untouched
    a = [torch.as_tensor(first.render(i)[0]) for i in range(12)]
    b = [torch.as_tensor(second.render(i)[0]) for i in range(12)]
    assert not any(torch.equal(x, y) for x in a for y in b)
    assert second.targets == [i % 4 for i in range(12, 24)] == first.targets  # balanced, same label layout
    # Window 1 item i is the stream's image 12 + i, whoever renders it.
    long = SynthStream(num_samples=24, num_classes=4, size=32, seed=3)
    assert all(torch.equal(torch.as_tensor(long.render(12 + i)[0]), b[i]) for i in range(12))


def test_training_loader_shows_new_images_each_epoch():
    stream = SynthStream(num_samples=8, num_classes=4, size=32, seed=3)
    preprocess = preprocess_config("demo", 32)

    def epoch_images(epoch: int) -> torch.Tensor:
        batches = list(train_loader(stream, preprocess, batch_size=4, seed=0, epoch=epoch, skip_batches=0, workers=0))
        return torch.cat([images for images, _ in batches])

    e0, e0_again, e1 = epoch_images(0), epoch_images(0), epoch_images(1)
    assert torch.equal(e0, e0_again)
    assert not any(torch.allclose(x, y) for x in e0 for y in e1)


def test_generator_options_from_yaml_become_synth_options():
    import pytest

    from fgvc_core.data.synth import SynthOptions
    from fgvc_core.engine.data import synth_options
    from fgvc_core.errors import ConfigError

    opts = synth_options({"scale_range": [0.6, 0.9], "clutter_shapes": [0, 3]})
    assert opts == SynthOptions(scale_range=(0.6, 0.9), clutter_shapes=(0, 3))
    with pytest.raises(ConfigError, match="unknown synth generator option"):
        synth_options({"scale": 1})
    easy = SynthStream(num_samples=40, num_classes=4, size=64, seed=1, options=opts)
    default = SynthStream(num_samples=40, num_classes=4, size=64, seed=1)
    easy_sides = [max(easy.annotation(i).box[2:]) / 64 for i in range(40)]
    default_sides = [max(default.annotation(i).box[2:]) / 64 for i in range(40)]
    assert min(easy_sides) > min(default_sides) + 0.2  # the easier curriculum really draws larger birds


def test_curriculum_epochs_use_the_easier_generator_then_the_benchmark():
    stream = SynthStream(num_samples=16, num_classes=4, size=64, seed=2)
    preprocess = preprocess_config("demo", 64)
    curriculum = {"epochs": 1, "options": {"scale_range": [0.7, 0.9], "clutter_shapes": [0, 0]}}

    def loader_stream(epoch: int) -> SynthStream:
        loader = train_loader(stream, preprocess, 4, 0, epoch, 0, 0, curriculum=curriculum)
        return loader.dataset.base

    easy, normal = loader_stream(0), loader_stream(1)
    assert easy.options.scale_range == (0.7, 0.9) and easy.options.clutter_shapes == (0, 0)
    assert normal.options == stream.options and normal.offset == 16
    assert min(max(easy.annotation(i).box[2:]) for i in range(16)) > 0.5 * 64
