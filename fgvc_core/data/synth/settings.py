"""Named settings of the generated benchmark: generator options plus the class count and image side they go with.

- ``demo``: the documented default benchmark (12 classes at 224 px, ``SynthOptions()``), on which the demo models
  reach 99-100 %, so no ablation variant can be told apart on it. It is kept exactly as it is.
- ``hard``: a benchmark where the variants can differ (issue 12): 16 classes (the demo's 12 plus four with the
  pointed tail or the spotted wing) at half the demo's resolution, so the deciding parts cover a few pixels. It is
  meant for a small backbone on a CPU; measured (docs/ablations.md): a plain resnet_tiny reaches 84.0 % test top-1
  in the grids' 900-step budget (9.2 minutes of one busy core), inside the 70-85 % aimed at (93.8 % in 1200 steps).

A recipe selects one with ``data.options: {setting: hard}`` (``SynthStream(setting=...)``); ``write_setting``
writes its held-out disk copy. The class table never depends on the setting, only the instance draw does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fgvc_core.data.synth.render import DEFAULT_OPTIONS, SynthOptions
from fgvc_core.errors import ConfigError


@dataclass(frozen=True)
class BenchmarkSetting:
    """One named benchmark: what the generator draws and the disk copy that is its held-out test set.

    Attributes:
        options: generator options of every image (training stream, validation stream and disk copy).
        num_classes: classes (a prefix of the fixed class table); a recipe's ``data.num_classes`` must match.
        size: image side in pixels, the network input side of the setting's recipes.
        per_class: images per class of the disk copy (half train, half test, as the demo copy).
        description: one line for logs and docs.
    """

    options: SynthOptions
    num_classes: int
    size: int
    per_class: int
    description: str


SETTINGS: dict[str, BenchmarkSetting] = {
    "demo": BenchmarkSetting(DEFAULT_OPTIONS, 12, 224, 100, "the default benchmark (12 classes, 224 px)"),
    "hard": BenchmarkSetting(
        SynthOptions(
            scale_range=(0.45, 0.85),  # the demo's 0.25-0.9 at half the resolution: birds of 50-95 px
            max_angle=25.0,
            min_part_frac=8.0 / 112.0,  # 8 px deciding parts at 112 px (the demo's: 12 px at 224)
            cell_min_px=3.5,  # wing pattern cells of 3.5 px (as the demo's minimum): easily lost by a coarse stride
            clutter_shapes=(8, 20),  # distractors in the part colours (the demo's: 8-22)
        ),
        num_classes=16,
        size=112,
        per_class=200,
        description="16 classes, 112 px, birds of 45-85 % of the side, 8 px parts, 8-20 clutter shapes",
    ),
}


def get_setting(name: str) -> BenchmarkSetting:
    """The setting called ``name``; a ConfigError that lists the known ones otherwise."""
    if not isinstance(name, str) or name not in SETTINGS:
        raise ConfigError(f"unknown synth setting {name!r}; choose one of {', '.join(SETTINGS)}")
    return SETTINGS[name]


def write_setting(root: str | Path, name: str, seed: int = 1, workers: int = 1, progress: bool = True) -> Path:
    """Write the held-out disk copy of setting ``name`` to ``root`` (seed 1, like the demo's test data)."""
    from fgvc_core.data.synth.writer import write_benchmark

    setting = get_setting(name)
    return write_benchmark(
        root,
        num_classes=setting.num_classes,
        per_class=setting.per_class,
        size=setting.size,
        seed=seed,
        workers=workers,
        options=setting.options,
        overwrite=True,
        progress=progress,
    )


def matches_setting(root: str | Path, name: str, seed: int = 1) -> bool:
    """True when ``root`` is a complete disk copy of setting ``name`` written with ``seed`` by this generator."""
    import json
    from dataclasses import asdict

    from fgvc_core.data.synth.spec import GENERATOR_VERSION
    from fgvc_core.data.synth.writer import META_FILE, is_complete

    if not is_complete(root):
        return False
    setting = get_setting(name)
    meta = json.loads((Path(root) / META_FILE).read_text(encoding="utf-8"))
    wanted = {"version": GENERATOR_VERSION, "seed": seed, "size": setting.size, "num_classes": setting.num_classes,
              "per_class": setting.per_class}  # fmt: skip
    options = json.loads(json.dumps(asdict(setting.options)))  # tuples as the JSON lists the meta file holds
    return all(meta.get(k) == v for k, v in wanted.items()) and meta.get("options") == options
