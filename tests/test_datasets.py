"""Every loader on its official layout (written by `layout_fixtures`), and every broken layout it must refuse."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from fgvc_core import ConfigError, DatasetError, build_dataset
from fgvc_core.data.cub import CUBAnnotation, CUBDataset
from fgvc_core.data.registry import DATASETS
from fgvc_core.data.transforms import build_transform, preprocess_config

sys.path.insert(0, str(Path(__file__).parent))
import layout_fixtures as lf  # noqa: E402


def _colour_ok(dataset, index: int, expected_label: int, colour_index: int) -> None:
    """Item ``index`` decodes (through load_image) to the solid colour the fixture gave that sample."""
    image, label = dataset[index]
    assert label == expected_label and image.mode == "RGB"
    mean = np.asarray(image).reshape(-1, 3).mean(0)
    np.testing.assert_allclose(mean, lf.sample_colour(expected_label, colour_index), atol=4)


def _raises(match_parts: list[str], fn, *args, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for part in match_parts:
        assert part in message, message
    return message


# ------------------------------------------------------------------------------------------------------- CUB
@pytest.mark.parametrize("nest", [True, False])
def test_cub_reads_samples_boxes_and_parts(tmp_path: Path, nest: bool) -> None:
    w = lf.make_cub(tmp_path, nest=nest)
    for split in ("train", "test"):
        ds = build_dataset("cub", w.root, split)
        assert isinstance(ds, CUBDataset)
        assert ds.classes == ["Class_A_bird", "Class_B_bird", "Class_C_bird"]  # "001." prefix dropped
        assert ds.samples == w.samples[split] and len(ds) == len(w.samples[split]) == 6
        assert ds.image_ids == w.extra[f"{split}_ids"]
        assert ds.boxes == w.boxes[split]
        assert ds.part_names == list(lf.CUB_PART_NAMES)
        for i, image_id in enumerate(ds.image_ids):
            expected = torch.tensor(w.extra[f"{split}_parts"][i], dtype=torch.float32)
            assert torch.equal(ds.part_locations(i), expected)
            ann = ds.annotation(i)
            assert isinstance(ann, CUBAnnotation)
            assert (ann.image_id, str(ann.path), ann.label) == (image_id, *w.samples[split][i])
            assert ann.box == w.boxes[split][i] and torch.equal(ann.parts, expected)
            _colour_ok(ds, i, w.samples[split][i][1], image_id)


def test_cub_part_names_come_from_parts_txt(tmp_path: Path) -> None:
    names = ("crest", "wing bar", "tail tip")  # the generated benchmark writes its own parts
    w = lf.make_cub(tmp_path, part_names=names, num_classes=2, per_class=2)
    ds = build_dataset("cub", w.root, "train")
    assert ds.part_names == list(names) and ds.part_locations(0).shape == (3, 3)


def test_cub_without_boxes_and_parts_still_classifies(tmp_path: Path) -> None:
    w = lf.make_cub(tmp_path, with_boxes=False, with_parts=False)
    ds = build_dataset("cub", w.root, "test")
    assert ds.samples == w.samples["test"]
    assert ds.boxes is None and ds.box(0) is None and ds.part_names is None and not ds.has_parts
    assert ds.annotation(0).parts is None and ds.annotation(0).box is None
    _raises(["part annotations"], ds.part_locations, 0)


def test_cub_transform_and_dataloader(tmp_path: Path) -> None:
    w = lf.make_cub(tmp_path)
    cfg = preprocess_config("demo", img_size=24)
    ds = build_dataset("cub", w.root, "train", transform=build_transform(cfg))
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 3, 24, 24) and y.tolist() == [label for _, label in w.samples["train"][:4]]


def test_cub_is_subclass_friendly(tmp_path: Path) -> None:
    class WithVisibleParts(CUBDataset):
        def __init__(self, root, split, transform=None):
            super().__init__(root, split, transform)
            self.visible = [int(self.part_locations(i)[:, 2].sum()) for i in range(len(self))]

    w = lf.make_cub(tmp_path)
    ds = WithVisibleParts(w.root, "train")
    assert ds.visible == [sum(v for _, _, v in parts) for parts in w.extra["train_parts"]]


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda b: (b / "images.txt").unlink(), ["images.txt", "missing"]),
        (lambda b: (b / "classes.txt").unlink(), ["classes.txt", "missing"]),
        (lambda b: (b / "train_test_split.txt").unlink(), ["train_test_split.txt", "missing"]),
        (lambda b: _replace_line(b / "images.txt", 3, "oops"), ["images.txt line 3", "<image_id> <image_path>"]),
        (lambda b: _replace_line(b / "image_class_labels.txt", 2, "2 x"), ["image_class_labels.txt line 2"]),
        (lambda b: _replace_line(b / "image_class_labels.txt", 4, "4 9"), ["image_class_labels.txt line 4", "1..3"]),
        (lambda b: _replace_line(b / "train_test_split.txt", 1, "1 2"), ["train_test_split.txt line 1"]),
        (lambda b: _replace_line(b / "bounding_boxes.txt", 5, "5 1 2 3"), ["bounding_boxes.txt line 5"]),
        (lambda b: _replace_line(b / "parts" / "part_locs.txt", 7, "1 2 3"), ["part_locs.txt line 7"]),
        (lambda b: _replace_line(b / "parts" / "part_locs.txt", 2, "1 99 1 1 1"), ["part_locs.txt line 2", "99"]),
        (lambda b: (b / "parts" / "parts.txt").unlink(), ["parts.txt", "missing"]),
        (lambda b: _append(b / "images.txt", "1 001.Class_A_bird/dup.jpg"), ["images.txt line 13", "twice"]),
        (lambda b: _drop_last_line(b / "image_class_labels.txt"), ["image_class_labels.txt has no line"]),
    ],
)
def test_cub_broken_layouts_name_the_file(tmp_path: Path, edit, needles: list[str]) -> None:
    w = lf.make_cub(tmp_path)
    edit(w.extra["base"])
    _raises(needles, build_dataset, "cub", w.root, "train")


def test_cub_missing_image_is_named(tmp_path: Path) -> None:
    w = lf.make_cub(tmp_path)
    victim = Path(w.samples["test"][1][0])
    victim.unlink()
    _raises([str(victim), "images.txt"], build_dataset, "cub", w.root, "test")
    assert len(build_dataset("cub", w.root, "train")) == 6  # only the split that lists it fails


def test_cub_missing_images_folder(tmp_path: Path) -> None:
    w = lf.make_cub(tmp_path, nest=False)
    (w.root / "images").rename(w.root / "imgs")
    _raises(["images", "missing"], build_dataset, "cub", w.root, "train")


# ------------------------------------------------------------------------------------------------------ Cars
def test_cars_reads_devkit_layout(tmp_path: Path) -> None:
    w = lf.make_cars(tmp_path)
    for split in ("train", "test"):
        for root in (w.root, w.root / "stanford_cars"):  # the parent (torchvision's root) or the folder itself
            ds = build_dataset("cars", root, split)
            assert ds.classes == list(lf.CARS_CLASSES)
            assert ds.samples == w.samples[split] and ds.boxes == w.boxes[split]
        for i, (_, label) in enumerate(w.samples[split]):
            _colour_ok(ds, i, label, i)


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda b: (b / "devkit" / "cars_meta.mat").unlink(), ["cars_meta.mat", "missing"]),
        (lambda b: (b / "devkit" / "cars_train_annos.mat").unlink(), ["cars_train_annos.mat", "missing"]),
        (lambda b: (b / "cars_train").rename(b / "train"), ["cars_train", "missing"]),
        (lambda b: (b / "devkit" / "cars_train_annos.mat").write_bytes(b"garbage" * 20), ["cars_train_annos.mat"]),
        (lambda b: _cars_set_class(b, 3, 7), ["cars_train_annos.mat annotation 3", "class 7", "1..3"]),
        (lambda b: (b / "cars_train" / "00002.jpg").unlink(), ["00002.jpg", "cars_train_annos.mat"]),
        (
            lambda b: scipy.io.savemat(b / "devkit" / "cars_meta.mat", {"names": np.array(["a"], dtype=object)}),
            ["cars_meta.mat", "class_names"],
        ),
    ],
)
def test_cars_broken_layouts_name_the_file(tmp_path: Path, edit, needles: list[str]) -> None:
    w = lf.make_cars(tmp_path)
    edit(w.root / "stanford_cars")
    _raises(needles, build_dataset, "cars", w.root, "train")


def test_cars_without_subfolder(tmp_path: Path) -> None:
    _raises(["stanford_cars", "missing"], build_dataset, "cars", tmp_path, "train")


# -------------------------------------------------------------------------------------------------- Aircraft
@pytest.mark.parametrize("split", ["train", "val", "trainval", "test"])
def test_aircraft_reads_all_levels(tmp_path: Path, split: str) -> None:
    w = lf.make_aircraft(tmp_path)
    ds = build_dataset("aircraft", w.root, split)
    assert ds.annotation_level == "variant" and ds.classes == list(lf.AIRCRAFT_VARIANTS)
    assert ds.samples == w.samples[split] and ds.boxes == w.boxes[split]
    assert ds.image_ids == w.extra[f"{split}_ids"]
    assert ds.levels == w.extra["levels"]
    assert ds.level_labels["variant"] == [label for _, label in w.samples[split]]
    assert ds.level_labels["family"] == w.extra[f"{split}_family"]
    assert ds.level_labels["manufacturer"] == w.extra[f"{split}_manufacturer"]


def test_aircraft_annotation_level_picks_labels_and_classes(tmp_path: Path) -> None:
    w = lf.make_aircraft(tmp_path)
    ds = build_dataset("aircraft", w.root / "fgvc-aircraft-2013b", "test", annotation_level="manufacturer")
    assert ds.classes == w.extra["levels"]["manufacturer"]
    assert ds.targets == w.extra["test_manufacturer"]
    assert [ds[i][1] for i in range(len(ds))] == w.extra["test_manufacturer"]
    with pytest.raises(ConfigError, match="annotation_level"):
        build_dataset("aircraft", w.root, "test", annotation_level="model")


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda d: (d / "variants.txt").unlink(), ["variants.txt", "missing"]),
        (lambda d: (d / "images_variant_train.txt").unlink(), ["images_variant_train.txt", "missing"]),
        (lambda d: _replace_line(d / "images_variant_train.txt", 2, "nospace"), ["images_variant_train.txt line 2"]),
        (
            lambda d: _replace_line(d / "images_variant_train.txt", 3, "1000111 Boeing 999"),
            ["images_variant_train.txt line 3", "'Boeing 999'", "variants.txt"],
        ),
        (lambda d: _drop_last_line(d / "images_family_train.txt"), ["images_family_train.txt", "different images"]),
        (lambda d: (d / "images" / "0000074.jpg").unlink(), ["0000074.jpg", "images_variant_train.txt"]),
        (lambda d: _replace_line(d / "images_box.txt", 1, "1000037 1 2"), ["images_box.txt line 1"]),
        (lambda d: _replace_line(d / "families.txt", 2, " "), ["families.txt line 2", "blank"]),
    ],
)
def test_aircraft_broken_layouts_name_the_file(tmp_path: Path, edit, needles: list[str]) -> None:
    w = lf.make_aircraft(tmp_path)
    edit(w.root / "fgvc-aircraft-2013b" / "data")
    _raises(needles, build_dataset, "aircraft", w.root, "train")


# ------------------------------------------------------------------------------------------------------ Dogs
def test_dogs_reads_lists_and_boxes(tmp_path: Path) -> None:
    w = lf.make_dogs(tmp_path)
    for split in ("train", "test"):
        ds = build_dataset("dogs", w.root, split)
        assert ds.classes == ["Chihuahua", "Japanese_spaniel", "Shih-Tzu"]
        assert ds.samples == w.samples[split]
        assert ds.boxes == w.boxes[split]  # the first <object> of each XML, not the second
    ds = build_dataset("dogs", w.root, "train")
    for i, (path, label) in enumerate(ds.samples):
        _colour_ok(ds, i, label, int(Path(path).stem.split("_")[1]) - 100)


def test_dogs_without_annotation_folder_has_no_boxes(tmp_path: Path) -> None:
    w = lf.make_dogs(tmp_path, annotations=False)
    ds = build_dataset("dogs", w.root, "test")
    assert ds.boxes is None and ds.box(0) is None and ds.samples == w.samples["test"]


def _dogs_rewrite(root: Path, split: str, files=None, labels=None) -> None:
    mat = scipy.io.loadmat(root / f"{split}_list.mat")
    if files is not None:
        mat["file_list"] = lf._cell(files)
    if labels is not None:
        mat["labels"] = np.array(labels, dtype=np.float64).reshape(-1, 1)
    scipy.io.savemat(root / f"{split}_list.mat", {k: v for k, v in mat.items() if not k.startswith("__")})


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda r: (r / "train_list.mat").unlink(), ["train_list.mat", "missing"]),
        (lambda r: _dogs_rewrite(r, "train", labels=[1, 1, 2, 2, 3, 4]), ["train_list.mat entry 6", "1..3"]),
        (lambda r: _dogs_rewrite(r, "train", labels=[1, 1, 2, 2, 3, 0]), ["train_list.mat entry 6", "1..3"]),
        (lambda r: _dogs_rewrite(r, "train", labels=[2, 1, 2, 2, 3, 3]), ["train_list.mat entry 1", "Japanese"]),
        (lambda r: _dogs_rewrite(r, "train", labels=[1, 2, 3]), ["train_list.mat", "6 entries", "labels has 3"]),
        (lambda r: (r / "Images" / "n02086240-Shih-Tzu" / "n02086240_101.jpg").unlink(), ["n02086240_101.jpg"]),
        (lambda r: (r / "Images").rename(r / "images_x"), ["Images", "missing"]),
    ],
)
def test_dogs_broken_layouts_name_the_file(tmp_path: Path, edit, needles: list[str]) -> None:
    w = lf.make_dogs(tmp_path)
    edit(w.root)
    _raises(needles, build_dataset, "dogs", w.root, "train")


def test_dogs_broken_annotation_xml_is_named(tmp_path: Path) -> None:
    w = lf.make_dogs(tmp_path)
    xml = w.root / "Annotation" / "n02085620-Chihuahua" / "n02085620_100"
    xml.write_text("<annotation><object></object>")
    ds = build_dataset("dogs", w.root, "train")  # boxes are read on use: classification is unaffected
    _raises([str(xml)], ds.box, 0)


# ---------------------------------------------------------------------------------------------------- Folder
def test_folder_with_split_dirs_and_flat(tmp_path: Path) -> None:
    w = lf.make_folder(tmp_path / "a")
    for split in ("train", "test"):
        ds = build_dataset("folder", w.root, split)
        assert ds.classes == ["crow", "finch", "wren"] and sorted(ds.samples) == sorted(w.samples[split])
    for i, (path, label) in enumerate(ds.samples):
        _colour_ok(ds, i, label, int(Path(path).stem[-1]))
    flat = lf.make_folder(tmp_path / "b", split_dirs=False)
    ds = build_dataset("folder", flat.root, "test")  # no split folders: the root itself
    assert sorted(ds.samples) == sorted(flat.samples["train"])


def test_folder_errors(tmp_path: Path) -> None:
    w = lf.make_folder(tmp_path / "a")
    _raises(["'val'", "split folders"], build_dataset, "folder", w.root, "val")
    for p in (w.root / "train" / "finch").iterdir():
        p.unlink() if p.suffix == ".png" else None
    _raises([str(w.root / "train" / "finch"), "no image files"], build_dataset, "folder", w.root, "train")
    (tmp_path / "empty").mkdir()
    _raises(["no class sub-folders"], build_dataset, "folder", tmp_path / "empty", "train")


# ------------------------------------------------------------------------------- torchvision equivalence
@pytest.mark.parametrize("split", ["train", "test"])
def test_cars_matches_torchvision_through_its_public_api(tmp_path: Path, split: str) -> None:
    from torchvision.datasets import StanfordCars

    lf.make_cars(tmp_path)
    ours, theirs = build_dataset("cars", tmp_path, split), StanfordCars(str(tmp_path), split=split, download=False)
    _same_as_torchvision(ours, theirs)


@pytest.mark.parametrize(("split", "level"), [("trainval", "variant"), ("test", "family"), ("val", "manufacturer")])
def test_aircraft_matches_torchvision_through_its_public_api(tmp_path: Path, split: str, level: str) -> None:
    from torchvision.datasets import FGVCAircraft

    lf.make_aircraft(tmp_path)
    ours = build_dataset("aircraft", tmp_path, split, annotation_level=level)
    _same_as_torchvision(ours, FGVCAircraft(str(tmp_path), split=split, annotation_level=level, download=False))


def _same_as_torchvision(ours, theirs) -> None:
    """Same classes, and item by item the same label and the same pixels (so the same file)."""
    assert ours.classes == list(theirs.classes) and len(ours) == len(theirs)
    for i in range(len(ours)):
        image, label = theirs[i]
        assert ours.targets[i] == label
        assert np.array_equal(np.asarray(ours.load(i)), np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("module", ["cars", "aircraft"])
def test_cars_and_aircraft_use_no_private_torchvision_attributes(module: str) -> None:
    """Issue 11: they parsed the layout AND read torchvision's private lists; now they parse it themselves only."""
    import importlib
    import inspect
    import re

    source = inspect.getsource(importlib.import_module(f"fgvc_core.data.{module}"))
    assert not re.search(r"\._(samples|image_files|labels)\b", source)
    assert not re.search(r"^\s*(from|import) torchvision", source, flags=re.MULTILINE)


# -------------------------------------------------------------------------------------------------- registry
def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'inat'"):
        build_dataset("inat", tmp_path, "train")
    with pytest.raises(ConfigError, match="split"):
        build_dataset("cub", tmp_path, "validation")
    with pytest.raises(ConfigError, match="'annotation_level'"):
        build_dataset("cub", tmp_path, "train", annotation_level="family")
    for name in ("cub", "cars", "aircraft", "dogs", "folder"):
        _raises(["not found", "missing_dir"], build_dataset, name, tmp_path / "missing_dir", "train")


def test_synth_is_resolved_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DATASETS["synth"] == "fgvc_core.data.synth.dataset:build_synth_dataset"
    calls = []
    fake = types.ModuleType("fgvc_core.data.synth.dataset")

    def build_synth_dataset(root, split, transform=None):
        calls.append((root, split, transform))
        return "synth-dataset"

    fake.build_synth_dataset = build_synth_dataset
    monkeypatch.setitem(sys.modules, "fgvc_core.data.synth.dataset", fake)
    assert build_dataset("synth", tmp_path, "test", transform=len) == "synth-dataset"
    assert calls == [(tmp_path, "test", len)]


# --------------------------------------------------------------------------------------------------- helpers
def _replace_line(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text + "\n")


def _drop_last_line(path: Path) -> None:
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")


def _cars_set_class(base: Path, entry: int, value: int) -> None:
    mat_path = base / "devkit" / "cars_train_annos.mat"
    annos = scipy.io.loadmat(mat_path)["annotations"]
    annos[0, entry - 1]["class"] = np.array([[value]], dtype=np.uint16)
    scipy.io.savemat(mat_path, {"annotations": annos})
