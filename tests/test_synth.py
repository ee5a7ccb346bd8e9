"""The generated benchmark: CUB layout, determinism, class decided by parts only, geometry, stream == writer."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy import stats

import fgvc_core
from fgvc_core.data.synth import render as synth_render
from fgvc_core.data.synth.dataset import SynthStream
from fgvc_core.data.synth.item import annotate_item, instance_of, render_item
from fgvc_core.data.synth.spec import (
    ATTRIBUTE_PART,
    MAX_CLASSES,
    PART_NAMES,
    class_table,
    deciding_parts,
    label_of,
)
from fgvc_core.errors import ConfigError
from train import make_demo_data, make_synth

K, PER_CLASS, SIZE, SEED = 6, 4, 64, 3


def _write(out: Path, seed: int = SEED, workers: int = 1, classes: int = K, per_class: int = PER_CLASS) -> Path:
    argv = ["--out", str(out), "--classes", str(classes), "--per-class", str(per_class), "--size", str(SIZE)]
    assert make_synth.main([*argv, "--seed", str(seed), "--workers", str(workers), "--quiet"]) == 0
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _index_of(path: str | Path) -> int:
    return int(Path(path).stem.split("_")[1])  # "s<seed>_<index>.jpg"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("synth") / "bench")


# ------------------------------------------------------------------------------------------------ on-disk layout
@pytest.mark.parametrize("split", ["train", "test"])
def test_cub_and_synth_loaders_read_the_same_benchmark(bench: Path, split: str) -> None:
    cub = fgvc_core.build_dataset("cub", bench, split)
    syn = fgvc_core.build_dataset("synth", bench, split)
    n_per_class = PER_CLASS // 2  # test fraction 0.5
    assert len(cub) == len(syn) == K * n_per_class
    assert cub.samples == syn.samples and cub.classes == syn.classes and len(cub.classes) == K
    assert np.bincount(syn.targets, minlength=K).tolist() == [n_per_class] * K
    assert syn.part_names == cub.part_names == list(PART_NAMES)
    for i in range(len(syn)):
        index = _index_of(syn.samples[i][0])
        # naive re-computation of the split rule and the label rule from the index
        assert syn.samples[i][1] == index % K
        assert (index // K < PER_CLASS // 2) == (split == "train")
        truth = annotate_item(SEED, index, K, SIZE)
        a = syn.annotation(i)
        assert cub.box(i) == syn.box(i)
        np.testing.assert_allclose(a.box, truth.box, atol=0.006)
        assert torch.equal(cub.part_locations(i), syn.part_locations(i))
        np.testing.assert_allclose(a.parts.numpy(), truth.parts, atol=0.006)
        np.testing.assert_allclose(a.part_boxes.numpy(), truth.part_boxes, atol=0.006)
        assert a.deciding_parts == tuple(deciding_parts(K))
        rows = [PART_NAMES.index(p) for p in a.deciding_parts]
        assert torch.equal(a.deciding_boxes, a.part_boxes[rows])
        assert syn.class_attributes[a.label] == class_table(K)[a.label]
    image, label = syn[0]
    assert image.size == (SIZE, SIZE) and label == syn.samples[0][1]


def test_meta_names_class_table_version_seed_and_size(bench: Path) -> None:
    meta = json.loads((bench / "synth_meta.json").read_text())
    assert (meta["seed"], meta["size"], meta["num_classes"], meta["per_class"]) == (SEED, SIZE, K, PER_CLASS)
    assert meta["version"] and meta["part_names"] == list(PART_NAMES)
    for k, entry in enumerate(meta["classes"]):
        assert entry["attributes"] == class_table(K)[k].as_dict()
        assert entry["deciding_parts"] == ["crest", "wing", "tail"]
    folders = [line.split()[1] for line in (bench / "classes.txt").read_text().splitlines()]
    assert folders == [c["folder"] for c in meta["classes"]]


def test_same_seed_same_bytes_any_workers_other_seed_other_images(tmp_path: Path) -> None:
    a = _files(_write(tmp_path / "a", workers=1))
    b = _files(_write(tmp_path / "b", workers=2))
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    c = _files(_write(tmp_path / "c", seed=SEED + 1))
    images_a = {v for k, v in a.items() if k.endswith(".jpg")}
    images_c = {v for k, v in c.items() if k.endswith(".jpg")}
    assert len(images_a) == K * PER_CLASS and not images_a & images_c
    meta_a, meta_c = json.loads(a["synth_meta.json"]), json.loads(c["synth_meta.json"])
    assert meta_a["classes"] == meta_c["classes"] and meta_a["seed"] != meta_c["seed"]


def test_cli_refuses_a_non_empty_folder_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "x.txt").write_text("keep me")
    assert make_synth.main(["--out", str(tmp_path), "--classes", "2", "--per-class", "1", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "x.txt").exists()


def test_class_table_is_fixed_and_validated() -> None:
    assert class_table(12) == class_table(MAX_CLASSES)[:12]
    assert len(set(class_table(MAX_CLASSES))) == MAX_CLASSES == 5 * 3 * 3
    base = class_table(12)  # the default is the full 3 x 2 x 2 grid
    assert {(c.crest_colour, c.wing_pattern, c.tail_shape) for c in base} == {
        (c, w, t) for c in ("red", "blue", "yellow") for w in ("barred", "checkered") for t in ("forked", "rounded")
    }
    assert deciding_parts(3) == ["crest", "wing", "tail"]
    with pytest.raises(ConfigError):
        class_table(MAX_CLASSES + 1)


# ------------------------------------------------------------------------------------ the class is in the parts
def _region_mean(image: np.ndarray, polys: list[np.ndarray], minus: list[np.ndarray]) -> np.ndarray:
    """Mean RGB over the pixels inside ``polys`` and outside ``minus`` (eroded: no anti-aliased edge pixels)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polys], 1)
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in minus], 0)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    assert mask.sum() >= 4, "region too small to measure"
    return image[mask].mean(axis=0)


def _nearest_centroid_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Fit centroids on the first half of the items, score on the second half (a naive classifier, written out)."""
    train = np.arange(len(y)) < len(y) // 2
    test = ~train
    classes = np.unique(y)
    centroids = np.stack([x[train & (y == c)].mean(axis=0) for c in classes])
    pred = classes[np.argmin(((x[test, None, :] - centroids[None]) ** 2).sum(-1), axis=1)]
    return float((pred == y[test]).mean())


def test_body_colour_carries_no_class_information() -> None:
    k, n, size = 12, 360, 160
    body, crest, labels = [], [], []
    table = class_table(k)
    for i in range(n):
        image, ann = render_item(7, i, k, size)
        lay = synth_render.layout(instance_of(7, i), table[ann.label], size)
        covering = [q for p in ("wing", "head", "crest", "legs", "tail") for q in lay.polys[p]]
        body.append(_region_mean(image, lay.polys["body"][:1], covering))  # body incl. its lighter belly
        crest.append(_region_mean(image, lay.polys["crest"], lay.polys["head"]))
        labels.append(ann.label)
    body_rgb, crest_rgb, y = np.array(body), np.array(crest), np.array(labels)
    hue = cv2.cvtColor(body_rgb.astype(np.uint8)[None], cv2.COLOR_RGB2HSV_FULL)[0, :, 0].astype(float)
    chance = 1 / k
    # 180 scored items: the std of a chance-level accuracy is ~0.02, so 0.07 above chance is > 3 sigma
    assert _nearest_centroid_accuracy(body_rgb, y) < chance + 0.07
    assert _nearest_centroid_accuracy(hue[:, None], y) < chance + 0.07
    assert stats.kruskal(*[hue[y == c] for c in range(k)]).pvalue > 0.01  # per-class hues indistinguishable
    # positive control: the same classifier on the crest colour finds the crest attribute (so the test can fail)
    crest_label = np.array([["red", "blue", "yellow"].index(table[c].crest_colour) for c in y])
    assert _nearest_centroid_accuracy(crest_rgb, crest_label) > 0.9


@pytest.mark.parametrize("attribute", list(ATTRIBUTE_PART))
def test_changing_one_deciding_part_changes_label_and_only_that_part(attribute: str) -> None:
    k, size, margin = 12, 128, 2
    part = ATTRIBUTE_PART[attribute]
    table = class_table(k)
    values = sorted({getattr(c, attribute) for c in table})
    for index in range(6):
        instance = instance_of(11, index)
        attrs = table[index % k]
        other = next(v for v in values if v != getattr(attrs, attribute))
        changed = attrs.replace(**{attribute: other})
        assert label_of(changed, k) not in (None, label_of(attrs, k))
        img_a, lay_a = synth_render.render(instance, attrs, size)
        img_b, lay_b = synth_render.render(instance, changed, size)
        diff = np.argwhere((img_a != img_b).any(axis=2))  # (row, col)
        assert len(diff) > 0.1 * np.prod(np.array(lay_a.boxes[part][2:]))  # the part visibly changed
        allowed = np.zeros((size, size), bool)
        for box in (lay_a.boxes[part], lay_b.boxes[part]):
            x0, y0 = int(np.floor(box[0])) - margin, int(np.floor(box[1])) - margin
            x1, y1 = int(np.ceil(box[0] + box[2])) + margin, int(np.ceil(box[1] + box[3])) + margin
            allowed[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
        assert allowed[diff[:, 0], diff[:, 1]].all(), f"{attribute}: pixels changed outside the {part} box"
        for other_part in PART_NAMES:
            if other_part != part:
                assert lay_a.boxes[other_part] == lay_b.boxes[other_part]


def test_wing_patterns_have_equal_ink_so_blur_removes_them() -> None:
    size = 224
    instance = instance_of(5, 0)
    attrs = class_table(12)[0]
    sharp_diff, blur_diff = [], []
    images = {}
    for pattern in ("barred", "checkered"):
        image, lay = synth_render.render(instance, attrs.replace(wing_pattern=pattern), size)
        x, y, w, h = (int(v) for v in lay.boxes["wing"])
        images[pattern] = image[y : y + h, x : x + w].astype(float)
    a, b = images["barred"], images["checkered"]
    sharp_diff = np.abs(a - b).mean()
    blur = lambda im: cv2.GaussianBlur(im, (0, 0), 3.0)  # noqa: E731
    blur_diff = np.abs(blur(a) - blur(b)).mean()
    assert sharp_diff > 20 and blur_diff < sharp_diff / 4


# ------------------------------------------------------------------------------------------------------ geometry
def test_scales_span_the_range_and_boxes_lie_inside() -> None:
    size, n = 224, 400
    sides, min_deciding = [], []
    for i in range(n):
        ann = annotate_item(2, i, 12, size)
        x, y, w, h = ann.box
        assert 0 <= x and 0 <= y and x + w <= size and y + h <= size
        assert ((ann.parts[:, :2] >= 0) & (ann.parts[:, :2] <= size)).all() and (ann.parts[:, 2] == 1).all()
        for bx, by, bw, bh in ann.part_boxes:
            assert 0 <= bx and 0 <= by and bx + bw <= size + 1e-9 and by + bh <= size + 1e-9
        for bx, by, bw, bh in ann.deciding_boxes:  # deciding part box inside the object box
            assert x - 1e-9 <= bx and y - 1e-9 <= by and bx + bw <= x + w + 1e-9 and by + bh <= y + h + 1e-9
            min_deciding.append(max(bw, bh))
        sides.append(max(w, h) / size)
    sides = np.array(sides)
    assert 0.2 <= sides.min() < 0.3 and 0.85 < sides.max() <= 0.92
    assert np.mean(sides < 0.4) > 0.1 and np.mean(sides > 0.75) > 0.1  # spread, not clustered
    assert min(min_deciding) >= 12.0  # deciding parts keep a minimum pixel size at the smallest scale


# -------------------------------------------------------------------------------------------- stream == writer
def test_stream_is_deterministic_and_matches_the_written_images(bench: Path) -> None:
    stream = SynthStream(K * PER_CLASS, num_classes=K, size=SIZE, seed=SEED, jpeg_quality=95)
    image0, label0 = stream[5]
    image1, label1 = stream[5]
    assert np.array_equal(np.asarray(image0), np.asarray(image1)) and label0 == label1 == 5 % K
    assert not np.array_equal(np.asarray(stream[6][0]), np.asarray(image0))
    syn = fgvc_core.build_dataset("synth", bench, "test")
    for i in range(0, len(syn), 3):
        index = _index_of(syn.samples[i][0])
        image, label = stream[index]
        assert label == syn.samples[i][1]
        assert np.array_equal(np.asarray(image), np.asarray(syn.load(i)))  # JPEG round trip: identical pixels
        np.testing.assert_allclose(stream.annotation(index).box, syn.annotation(i).box, atol=0.006)
    raw = SynthStream(4, num_classes=K, size=SIZE, seed=SEED)  # default: the raw render, no JPEG
    assert np.array_equal(np.asarray(raw[1][0]), render_item(SEED, 1, K, SIZE)[0])


def _to_tensor(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy())


def test_stream_works_in_dataloader_workers() -> None:
    to_tensor = _to_tensor  # module level: workers must pickle the transform
    stream = SynthStream(8, num_classes=4, size=48, seed=0, transform=to_tensor)
    copy = pickle.loads(pickle.dumps(stream))
    assert torch.equal(copy[3][0], stream[3][0])
    loader = torch.utils.data.DataLoader(stream, batch_size=4, num_workers=2)
    batches = list(loader)
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert labels.tolist() == [i % 4 for i in range(8)]
    for i in range(8):
        assert torch.equal(images[i], to_tensor(render_item(0, i, 4, 48)[0]))


# --------------------------------------------------------------------------------------------------- demo data
def test_make_demo_data_is_idempotent_and_repairs(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    argv = ["--root", str(root), "--per-class", "2", "--size", "48", "--quiet"]
    assert make_demo_data.main(argv) == 0
    meta = json.loads((root / "synth_meta.json").read_text())
    assert (meta["num_classes"], meta["per_class"], meta["seed"]) == (12, 2, 1)
    stamp = (root / "synth_meta.json").stat().st_mtime_ns
    assert make_demo_data.main(argv) == 0
    assert (root / "synth_meta.json").stat().st_mtime_ns == stamp  # nothing rewritten
    victim = next((root / "images").rglob("*.jpg"))
    victim.unlink()
    assert make_demo_data.main(argv) == 0
    assert victim.is_file() and len(fgvc_core.build_dataset("synth", root, "train")) == 12
