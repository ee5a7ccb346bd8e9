"""Contact sheet of the benchmark: one example per class, its deciding parts boxed, and zooms on those parts.

It is the quickest check that the classes differ only by their parts: bodies, poses and backgrounds vary at random
from tile to tile, while the zooms show the crest colour, wing pattern and tail shape that name the class.
Regenerate with ``python -m train.make_synth --contact-sheet docs/synth_contact_sheet.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvc_core.data.synth.item import SynthAnnotation, render_item
from fgvc_core.data.synth.spec import DEFAULT_NUM_CLASSES, class_name

_BOX_COLOURS = ("#00e5ff", "#ff9800", "#76ff03")  # crest, wing, tail boxes


def _zoom(image: np.ndarray, box: np.ndarray, min_side: float = 28.0) -> np.ndarray:
    """A square crop around a part box (with a margin), so small parts are shown large."""
    x, y, w, h = box
    side = max(w, h, min_side) * 1.3
    cx, cy = x + w / 2, y + h / 2
    size = image.shape[0]
    x0 = int(np.clip(cx - side / 2, 0, max(size - side, 0)))
    y0 = int(np.clip(cy - side / 2, 0, max(size - side, 0)))
    return image[y0 : y0 + int(side), x0 : x0 + int(side)]


def write_contact_sheet(
    path: str | Path, num_classes: int = DEFAULT_NUM_CLASSES, size: int = 224, seed: int = 0, columns: int = 4
) -> Path:
    """Render item k (= class k) of benchmark ``seed`` for every class and save the sheet as a PNG.

    Args:
        path: output PNG.
        num_classes: classes to show (a prefix of the fixed table).
        size: image side in pixels.
        seed: instance seed (changes the examples, not the classes).
        columns: class panels per row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    items: list[tuple[np.ndarray, SynthAnnotation]] = [
        render_item(seed, k, num_classes, size) for k in range(num_classes)
    ]
    rows = -(-num_classes // columns)
    fig = plt.figure(figsize=(4.2 * columns, 5.6 * rows), dpi=72)
    outer = fig.add_gridspec(rows, columns, wspace=0.08, hspace=0.2)
    for k, (image, ann) in enumerate(items):
        n_zoom = len(ann.deciding_parts)
        cell = outer[k // columns, k % columns].subgridspec(2, max(n_zoom, 1), height_ratios=(3, 1), hspace=0.05)
        ax = fig.add_subplot(cell[0, :])
        ax.imshow(image)
        attrs = ann.attributes
        ax.set_title(
            f"{k + 1}. {class_name(attrs)}\ncrest={attrs.crest_colour}  wing={attrs.wing_pattern}  "
            f"tail={attrs.tail_shape}",
            fontsize=10,
        )
        for j, (part, box) in enumerate(zip(ann.deciding_parts, ann.deciding_boxes)):
            colour = _BOX_COLOURS[j % len(_BOX_COLOURS)]
            ax.add_patch(Rectangle(box[:2], box[2], box[3], fill=False, edgecolor=colour, linewidth=1.2))
            zoom_ax = fig.add_subplot(cell[1, j])
            zoom_ax.imshow(_zoom(image, box), interpolation="nearest")
            zoom_ax.set_xlabel(part, fontsize=9, color="black")
            for spine in zoom_ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2)
            zoom_ax.set_xticks([])
            zoom_ax.set_yticks([])
        ax.axis("off")
    fig.suptitle(
        f"synth benchmark: {num_classes} classes decided only by crest colour x wing pattern x tail shape "
        f"(seed {seed}, {size} px; boxes = deciding parts)",
        fontsize=13,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
