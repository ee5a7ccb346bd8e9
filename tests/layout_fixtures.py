"""Write tiny datasets in the OFFICIAL on-disk layouts (CUB-200-2011, Stanford Cars devkit, FGVC-Aircraft 2013b,
Stanford Dogs, class folders) into a temporary folder.

Each writer returns a `Written` record of what it put on disk (the ground truth a test compares the loader
against). Images are small solid-colour JPEGs whose colour encodes (label, index), so a test can also check that
an item decodes to the image its sample names. Other tests may reuse these writers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

CUB_PART_NAMES = ("back", "beak", "left eye", "right wing", "tail")
CARS_CLASSES = ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012")
AIRCRAFT_VARIANTS = ("707-320", "737-700", "A320", "Cessna 172")
AIRCRAFT_FAMILY = {"707-320": "Boeing 707", "737-700": "Boeing 737", "A320": "A320", "Cessna 172": "Cessna 172"}
AIRCRAFT_MAKER = {"Boeing 707": "Boeing", "Boeing 737": "Boeing", "A320": "Airbus", "Cessna 172": "Cessna"}
DOG_FOLDERS = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02086240-Shih-Tzu")


@dataclass
class Written:
    """What a writer put on disk.

    Attributes:
        root: The folder to pass to the loader.
        classes: Expected class names in label order.
        samples: ``{split: [(absolute image path, 0-based label), ...]}`` in the loader's expected order.
        boxes: ``{split: [(x, y, w, h), ...]}`` aligned with ``samples`` (empty when the set has none).
        extra: Per-set ground truth (CUB parts and ids, aircraft levels, ...).
    """

    root: Path
    classes: list[str]
    samples: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    boxes: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def sample_colour(label: int, index: int) -> tuple[int, int, int]:
    """The solid colour of the image of sample ``index`` with ``label`` (distinct per sample)."""
    return (40 + 60 * (label % 4), 30 + 25 * (index % 8), 200 - 40 * (label // 4))


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 32)) -> Path:
    """A solid-colour JPEG (JPEG keeps a flat colour within a couple of levels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)
    return path


def _size(index: int) -> tuple[int, int]:
    return (40 + 4 * (index % 3), 32 + 2 * (index % 2))


# ------------------------------------------------------------------------------------------------------- CUB
def make_cub(
    tmp: Path,
    num_classes: int = 3,
    per_class: int = 4,
    part_names: tuple[str, ...] = CUB_PART_NAMES,
    with_boxes: bool = True,
    with_parts: bool = True,
    nest: bool = True,
    seed: int = 0,
) -> Written:
    """CUB-200-2011 layout; with ``nest`` the files sit in ``tmp/CUB_200_2011`` and ``tmp`` is the root to pass.

    Every second image of a class is a training image; image ids are 1-based in class order, as in CUB. Image ids
    are listed in shuffled order in each file, so a loader that relies on line order is caught.
    """
    rng = random.Random(seed)
    base = tmp / "CUB_200_2011" if nest else tmp
    folders = [f"{c + 1:03d}.Class_{chr(65 + c)}_bird" for c in range(num_classes)]
    rows, image_id = [], 0
    for label, folder in enumerate(folders):
        for k in range(per_class):
            image_id += 1
            rel = f"{folder}/{folder[4:]}_{k:04d}_{image_id}.jpg"
            size = _size(image_id)
            write_image(base / "images" / rel, sample_colour(label, image_id), size)
            box = (float(rng.randint(0, 5)), float(rng.randint(0, 5)), float(rng.randint(10, 30)), 20.0 + k)
            parts = [
                (float(rng.randint(1, size[0] - 1)), float(rng.randint(1, size[1] - 1)), 1)
                if rng.random() < 0.7
                # CUB writes invisible parts as 0 0 0
                else (0.0, 0.0, 0)
                for _ in part_names
            ]
            rows.append({"id": image_id, "rel": rel, "label": label, "train": k % 2, "box": box, "parts": parts})
    order = rows[:]
    rng.shuffle(order)
    _write(base / "classes.txt", [f"{i + 1} {f}" for i, f in enumerate(folders)])
    _write(base / "images.txt", [f"{r['id']} {r['rel']}" for r in order])
    _write(base / "image_class_labels.txt", [f"{r['id']} {r['label'] + 1}" for r in order])
    _write(base / "train_test_split.txt", [f"{r['id']} {r['train']}" for r in order])
    if with_boxes:
        _write(base / "bounding_boxes.txt", [f"{r['id']} " + " ".join(f"{v:.1f}" for v in r["box"]) for r in order])
    if with_parts:
        _write(base / "parts" / "parts.txt", [f"{i + 1} {n}" for i, n in enumerate(part_names)])
        _write(
            base / "parts" / "part_locs.txt",
            [f"{r['id']} {p + 1} {x:.1f} {y:.1f} {v}" for r in order for p, (x, y, v) in enumerate(r["parts"])],
        )
    written = Written(tmp if nest else base, [f[4:] for f in folders], extra={"base": base, "part_names": part_names})
    for split, flag in (("train", 1), ("test", 0)):
        chosen = sorted((r for r in rows if r["train"] == flag), key=lambda r: r["id"])
        written.samples[split] = [(str(base / "images" / r["rel"]), r["label"]) for r in chosen]
        written.boxes[split] = [r["box"] for r in chosen] if with_boxes else []
        written.extra[f"{split}_ids"] = [r["id"] for r in chosen]
        written.extra[f"{split}_parts"] = [r["parts"] for r in chosen]
    return written


# ------------------------------------------------------------------------------------------------------ Cars
def make_cars(tmp: Path, per_split: int = 5, classes: tuple[str, ...] = CARS_CLASSES) -> Written:
    """Stanford Cars devkit layout under ``tmp/stanford_cars`` with the .mat structures torchvision reads."""
    base = tmp / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": _cell(classes, row=True)})
    written = Written(tmp, list(classes))
    for split, folder, mat_path in (
        ("train", "cars_train", base / "devkit" / "cars_train_annos.mat"),
        ("test", "cars_test", base / "cars_test_annos_withlabels.mat"),
    ):
        fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
        annos = np.zeros((1, per_split), dtype=[(f, object) for f in fields])
        samples, boxes = [], []
        for i in range(per_split):
            label = (i * 2 + (split == "test")) % len(classes)
            fname = f"{i + 1:05d}.jpg"
            write_image(base / folder / fname, sample_colour(label, i), _size(i))
            x1, y1, x2, y2 = 2 + i, 3, 30 + i, 25
            values = [x1, y1, x2, y2, label + 1]
            for f, v in zip(fields, values):
                annos[0, i][f] = np.array([[v]], dtype=np.uint16)  # the real files store 1x1 integer arrays
            annos[0, i]["fname"] = fname
            samples.append((str(base / folder / fname), label))
            boxes.append((float(x1), float(y1), float(x2 - x1), float(y2 - y1)))
        scipy.io.savemat(mat_path, {"annotations": annos})
        written.samples[split], written.boxes[split] = samples, boxes
    return written


# -------------------------------------------------------------------------------------------------- Aircraft
def make_aircraft(tmp: Path, per_split: int = 4) -> Written:
    """FGVC-Aircraft 2013b layout under ``tmp/fgvc-aircraft-2013b/data``, all three levels, all four splits."""
    data = tmp / "fgvc-aircraft-2013b" / "data"
    variants = list(AIRCRAFT_VARIANTS)
    families = sorted(set(AIRCRAFT_FAMILY.values()))
    makers = sorted(set(AIRCRAFT_MAKER.values()))
    _write(data / "variants.txt", variants)
    _write(data / "families.txt", families)
    _write(data / "manufacturers.txt", makers)
    written = Written(
        tmp, variants, extra={"levels": {"variant": variants, "family": families, "manufacturer": makers}}
    )
    boxes_lines, per_split_rows, counter = [], {}, 0
    for split in ("train", "val", "test"):
        rows = []
        for _ in range(per_split):
            counter += 1
            image_id = f"{1000000 + 37 * counter:07d}" if counter % 2 else f"{37 * counter:07d}"  # leading zeros
            variant = variants[counter % len(variants)]
            label = variants.index(variant)
            write_image(data / "images" / f"{image_id}.jpg", sample_colour(label, counter), _size(counter))
            box = (float(counter), 2.0, float(counter + 25), 28.0)
            boxes_lines.append(f"{image_id} " + " ".join(str(int(v)) for v in box))
            rows.append((image_id, variant, box))
        per_split_rows[split] = rows
    per_split_rows["trainval"] = per_split_rows["train"] + per_split_rows["val"]
    _write(data / "images_box.txt", boxes_lines)
    for split, rows in per_split_rows.items():
        _write(data / f"images_variant_{split}.txt", [f"{i} {v}" for i, v, _ in rows])
        _write(data / f"images_family_{split}.txt", [f"{i} {AIRCRAFT_FAMILY[v]}" for i, v, _ in rows])
        _write(
            data / f"images_manufacturer_{split}.txt",
            [f"{i} {AIRCRAFT_MAKER[AIRCRAFT_FAMILY[v]]}" for i, v, _ in rows],
        )
        written.samples[split] = [(str(data / "images" / f"{i}.jpg"), variants.index(v)) for i, v, _ in rows]
        written.boxes[split] = [(b[0], b[1], b[2] - b[0], b[3] - b[1]) for _, _, b in rows]
        written.extra[f"{split}_ids"] = [i for i, _, _ in rows]
        written.extra[f"{split}_family"] = [families.index(AIRCRAFT_FAMILY[v]) for _, v, _ in rows]
        written.extra[f"{split}_manufacturer"] = [makers.index(AIRCRAFT_MAKER[AIRCRAFT_FAMILY[v]]) for _, v, _ in rows]
    return written


# ------------------------------------------------------------------------------------------------------ Dogs
def make_dogs(
    tmp: Path, per_class: int = 3, folders: tuple[str, ...] = DOG_FOLDERS, annotations: bool = True
) -> Written:
    """Stanford Dogs layout: ``Images/``, ``train_list.mat``/``test_list.mat`` (1-based labels), ``Annotation/``."""
    written = Written(tmp, [f.split("-", 1)[1] for f in folders])
    lists: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    boxes: dict[str, list] = {"train": [], "test": []}
    for label, folder in enumerate(folders):
        wnid = folder.split("-")[0]
        for k in range(per_class):
            rel = f"{folder}/{wnid}_{100 + k}.jpg"
            size = _size(k)
            write_image(tmp / "Images" / rel, sample_colour(label, k), size)
            split = "train" if k < per_class - 1 else "test"
            lists[split].append((rel, label))
            box = (1.0 + k, 2.0, 20.0 + k, 18.0)
            boxes[split].append((box[0], box[1], box[2] - box[0], box[3] - box[1]))
            if annotations:
                _write_voc(tmp / "Annotation" / folder / f"{wnid}_{100 + k}", size, box)
    for split, entries in lists.items():
        scipy.io.savemat(
            tmp / f"{split}_list.mat",
            {
                "file_list": _cell([rel for rel, _ in entries]),
                "annotation_list": _cell([rel[:-4] for rel, _ in entries]),
                "labels": np.array([[label + 1] for _, label in entries], dtype=np.float64),
            },
        )
        written.samples[split] = [(str(tmp / "Images" / rel), label) for rel, label in entries]
        written.boxes[split] = boxes[split] if annotations else []
    return written


def _write_voc(path: Path, size: tuple[int, int], box: tuple[float, ...]) -> None:
    x0, y0, x1, y1 = (int(v) for v in box)
    # a second, different dog after the first: the loader reports the first object
    xml = (
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        f"<object><name>dog</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
        "</bndbox></object><object><name>dog</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>5</xmax>"
        "<ymax>5</ymax></bndbox></object></annotation>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(xml)


# ---------------------------------------------------------------------------------------------------- Folder
def make_folder(
    tmp: Path, classes: tuple[str, ...] = ("crow", "finch", "wren"), per_class: int = 2, split_dirs: bool = True
) -> Written:
    """``tmp/<split>/<class>/*.png`` (or ``tmp/<class>/`` without ``split_dirs``), plus a non-image file."""
    written = Written(tmp, sorted(classes))
    splits = ("train", "test") if split_dirs else ("",)
    for split in splits:
        samples = []
        for label, name in enumerate(sorted(classes)):
            for k in range(per_class):
                path = tmp / split / name / f"img_{k}.png" if split else tmp / name / f"img_{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", _size(k), sample_colour(label, k)).save(path)
                samples.append((str(path), label))
            (path.parent / "notes.txt").write_text("not an image")  # must be skipped by the extension filter
        written.samples[split or "train"] = samples
    return written


# ---------------------------------------------------------------------------------------------------- helpers
def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _cell(items, row: bool = False) -> np.ndarray:
    """A MATLAB cell array of strings (1 x N with ``row``, else N x 1 as in the Dogs lists)."""
    cell = np.empty((1, len(items)) if row else (len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell.flat[i] = item
    return cell
