"""The generated fine-grained benchmark ``synth``: rendered birds whose class is decided only by small parts.

- ``spec``: the fixed class table (crest colour x wing pattern x tail shape), independent of the seed;
- ``render`` / ``background``: instance draw, geometry and OpenCV drawing;
- ``item``: the (seed, index) -> (image, annotation) rule shared by the writer and the stream;
- ``writer``: the CUB-layout writer (``python -m train.make_synth``);
- ``dataset``: ``SynthDataset`` / ``build_synth_dataset`` (disk) and ``SynthStream`` (on the fly);
- ``contact_sheet``: one example per class with zooms on the deciding parts.

Names are resolved lazily so that rendering workers never import torch. See docs/synth.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ClassAttributes": "spec",
    "class_table": "spec",
    "deciding_parts": "spec",
    "PART_NAMES": "spec",
    "SynthOptions": "render",
    "InstanceParams": "render",
    "sample_instance": "render",
    "SynthAnnotation": "item",
    "render_item": "item",
    "annotate_item": "item",
    "instance_of": "item",
    "write_benchmark": "writer",
    "is_complete": "writer",
    "SynthDataset": "dataset",
    "SynthStream": "dataset",
    "build_synth_dataset": "dataset",
    "write_contact_sheet": "contact_sheet",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fgvc_core.data.synth' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fgvc_core.data.synth.{module}"), name)
