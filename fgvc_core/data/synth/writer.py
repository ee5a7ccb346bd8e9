"""Write the generated benchmark to disk in the CUB-200-2011 layout, plus the synth-only extras.

Files (``root``)::

    images/<NNN.Class_folder>/s<seed>_<index>.jpg
    images.txt  classes.txt  image_class_labels.txt  train_test_split.txt  bounding_boxes.txt
    parts/parts.txt  parts/part_locs.txt            (CUB's formats, so the CUB loader reads the benchmark)
    parts/part_boxes.txt                            synth extra: <image_id> <part_id> <x> <y> <w> <h>
    synth_meta.json                                 synth extra: class table, deciding parts, version, seed, size

Image ``index`` (0-based) is rendered from (seed, index) with label ``index % num_classes``; the j-th image of a
class (j = index // num_classes) is a test image when j >= the per-class train count. Image ids group the images
by class, as in CUB. Workers only render and encode; the parent writes in index order, so the bytes of every file
do not depend on ``workers``. The folder is built under a temporary name and renamed at the end, so a folder named
``root`` that holds ``synth_meta.json`` is complete.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from fgvc_core.data.synth.item import check_seed, render_item
from fgvc_core.data.synth.render import DEFAULT_OPTIONS, SynthOptions
from fgvc_core.data.synth.spec import (
    DEFAULT_NUM_CLASSES,
    GENERATOR_VERSION,
    PART_NAMES,
    class_folder,
    class_name,
    class_table,
    deciding_parts,
)
from fgvc_core.errors import ConfigError

META_FILE = "synth_meta.json"
PART_BOXES_FILE = "parts/part_boxes.txt"
DEFAULT_JPEG_QUALITY = 95


def image_name(seed: int, index: int) -> str:
    """File name of image ``index`` (the seed is in the name so files of two benchmarks never look alike)."""
    return f"s{seed}_{index:06d}.jpg"


def split_counts(per_class: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) images per class."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ConfigError(f"test fraction must be in [0, 1], got {test_fraction}")
    n_test = int(round(per_class * test_fraction))
    return per_class - n_test, n_test


def encode_jpeg(image: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """RGB uint8 -> JPEG bytes (OpenCV's encoder: deterministic for a given build)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _render_encode(
    index: int, seed: int, num_classes: int, size: int, quality: int, options: SynthOptions
) -> tuple[int, bytes, np.ndarray, np.ndarray, np.ndarray]:
    image, ann = render_item(seed, index, num_classes, size, options)
    return index, encode_jpeg(image, quality), ann.box, ann.parts, ann.part_boxes


def _rendered(indices: list[int], workers: int, **kwargs: Any) -> Iterator[tuple]:
    job = partial(_render_encode, **kwargs)
    if workers <= 1:
        yield from map(job, indices)
        return
    # "spawn" avoids forking a parent that may hold torch threads; ordered imap keeps the output deterministic.
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(job, indices, chunksize=32)


def meta_dict(
    num_classes: int, per_class: int, size: int, seed: int, test_fraction: float, quality: int, options: SynthOptions
) -> dict[str, Any]:
    """The content of synth_meta.json: everything needed to know what a class means and to re-render any image."""
    deciding = deciding_parts(num_classes)
    return {
        "generator": "fgvc_core.data.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "num_classes": num_classes,
        "per_class": per_class,
        "test_fraction": test_fraction,
        "jpeg_quality": quality,
        "label_rule": "image index i has label i % num_classes, rendered from default_rng([seed, i])",
        "options": asdict(options),
        "part_names": list(PART_NAMES),
        "deciding_parts": deciding,
        "classes": [
            {
                "label": k,
                "folder": class_folder(k, attrs),
                "name": class_name(attrs),
                "attributes": attrs.as_dict(),
                "deciding_parts": deciding,
            }
            for k, attrs in enumerate(class_table(num_classes))
        ],
    }


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def write_benchmark(
    root: str | Path,
    num_classes: int = DEFAULT_NUM_CLASSES,
    per_class: int = 50,
    size: int = 224,
    seed: int = 0,
    test_fraction: float = 0.5,
    workers: int = 1,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    options: SynthOptions = DEFAULT_OPTIONS,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Render and write a benchmark in the CUB layout; returns the folder.

    Args:
        root: output folder; it must not exist (or be empty) unless ``overwrite``.
        num_classes: number of classes, a prefix of the fixed class table (``spec.class_table``).
        per_class: images per class (train + test).
        size: image side in pixels.
        seed: instance seed; the class meanings never depend on it.
        test_fraction: fraction of each class marked as test in train_test_split.txt.
        workers: rendering processes; the written bytes do not depend on it.
        jpeg_quality: JPEG quality of the images.
        options: generator options (recorded in synth_meta.json).
        overwrite: replace an existing non-empty folder.
        progress: show a tqdm bar.
    """
    check_seed(seed)
    table = class_table(num_classes)
    if per_class < 1 or size < 32:
        raise ConfigError(f"need per_class >= 1 and size >= 32, got per_class={per_class}, size={size}")
    n_train, _ = split_counts(per_class, test_fraction)
    root = Path(root).expanduser()
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {root} is not empty (use --overwrite to replace it)")
    # One partial folder per process: two runs that need the same missing benchmark (train.ablate --jobs 2) render it
    # side by side instead of deleting each other's half-written files; the first to finish wins.
    tmp = root.with_name(f".{root.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    folders = [class_folder(k, attrs) for k, attrs in enumerate(table)]
    for folder in folders:
        (tmp / "images" / folder).mkdir(parents=True, exist_ok=True)
    (tmp / "parts").mkdir()

    total = num_classes * per_class
    # image id order: grouped by class, then by index (as in CUB)
    order = sorted(range(total), key=lambda i: (i % num_classes, i))
    image_id = {index: n + 1 for n, index in enumerate(order)}
    rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    stream = _rendered(
        list(range(total)), workers, seed=seed, num_classes=num_classes, size=size, quality=jpeg_quality,
        options=options,
    )  # fmt: skip
    for index, jpeg, box, parts, part_boxes in tqdm(stream, total=total, desc="synth", disable=not progress):
        (tmp / "images" / folders[index % num_classes] / image_name(seed, index)).write_bytes(jpeg)
        rows[index] = (box, parts, part_boxes)

    lines: dict[str, list[str]] = {k: [] for k in ("images", "labels", "split", "boxes", "locs", "pboxes")}
    for index in order:
        i, label = image_id[index], index % num_classes
        box, parts, part_boxes = rows[index]
        lines["images"].append(f"{i} {folders[label]}/{image_name(seed, index)}")
        lines["labels"].append(f"{i} {label + 1}")
        lines["split"].append(f"{i} {int(index // num_classes < n_train)}")
        lines["boxes"].append(f"{i} {_fmt(box)}")
        for p in range(len(PART_NAMES)):
            lines["locs"].append(f"{i} {p + 1} {_fmt(parts[p, :2])} {int(parts[p, 2])}")
            lines["pboxes"].append(f"{i} {p + 1} {_fmt(part_boxes[p])}")
    files = {
        "images.txt": lines["images"],
        "classes.txt": [f"{k + 1} {f}" for k, f in enumerate(folders)],
        "image_class_labels.txt": lines["labels"],
        "train_test_split.txt": lines["split"],
        "bounding_boxes.txt": lines["boxes"],
        "parts/parts.txt": [f"{p + 1} {name}" for p, name in enumerate(PART_NAMES)],
        "parts/part_locs.txt": lines["locs"],
        PART_BOXES_FILE: lines["pboxes"],
    }
    for name, content in files.items():
        (tmp / name).write_text("\n".join(content) + "\n", encoding="utf-8")
    meta = meta_dict(num_classes, per_class, size, seed, test_fraction, jpeg_quality, options)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")  # last: completion marker
    if root.exists() and not overwrite and is_complete(root):  # another process finished the same benchmark first
        shutil.rmtree(tmp)
        return root
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root


def is_complete(root: str | Path) -> bool:
    """True when ``root`` holds a finished benchmark: synth_meta.json and every image listed in images.txt."""
    root = Path(root)
    try:
        meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
        listed = (root / "images.txt").read_text(encoding="utf-8").split("\n")
    except (OSError, ValueError):
        return False
    paths = [line.split(maxsplit=1)[1] for line in listed if line.strip()]
    expected = meta.get("num_classes", 0) * meta.get("per_class", 0)
    return len(paths) == expected and all((root / "images" / p).is_file() for p in paths)
