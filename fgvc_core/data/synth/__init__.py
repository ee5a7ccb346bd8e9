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

from fgvc_core._lazy import lazy_exports

_LAZY = {
    "ClassAttributes": "fgvc_core.data.synth.spec",
    "class_table": "fgvc_core.data.synth.spec",
    "deciding_parts": "fgvc_core.data.synth.spec",
    "PART_NAMES": "fgvc_core.data.synth.spec",
    "SynthOptions": "fgvc_core.data.synth.render",
    "InstanceParams": "fgvc_core.data.synth.render",
    "sample_instance": "fgvc_core.data.synth.render",
    "SynthAnnotation": "fgvc_core.data.synth.item",
    "render_item": "fgvc_core.data.synth.item",
    "annotate_item": "fgvc_core.data.synth.item",
    "instance_of": "fgvc_core.data.synth.item",
    "write_benchmark": "fgvc_core.data.synth.writer",
    "is_complete": "fgvc_core.data.synth.writer",
    "SynthDataset": "fgvc_core.data.synth.dataset",
    "SynthStream": "fgvc_core.data.synth.dataset",
    "build_synth_dataset": "fgvc_core.data.synth.dataset",
    "write_contact_sheet": "fgvc_core.data.synth.contact_sheet",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
