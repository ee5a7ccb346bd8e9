"""Hostile inputs to the data layer (issue 15, "Files that are not regular files"): FIFOs, devices, sockets,
symlink loops, hidden folders, annotated paths that leave the dataset, NaN/negative boxes, empty splits, BOMs.

Every case asserts the one-line message (file and line where there is one). Cases that could block forever on
the old code (a FIFO) carry a timeout so that a regression fails instead of hanging the suite. The table of
cases and outcomes is docs/hostile_inputs/data.md.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fgvc_core import DatasetError, ImageError, build_dataset, load_image
from fgvc_core.data import images as images_module

sys.path.insert(0, str(Path(__file__).parent))
import layout_fixtures as lf  # noqa: E402

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symlinks (POSIX)")


def _one_line(exc: Exception, *needles: str) -> str:
    message = str(exc)
    assert message and "\n" not in message, message
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    for needle in needles:
        assert needle in message, message
    return message


def _image_error(source, *needles: str) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source)
    assert type(info.value) is ImageError
    return _one_line(info.value, *needles)


def _dataset_error(name: str, root: Path, split: str, *needles: str, **options) -> str:
    with pytest.raises(DatasetError) as info:
        build_dataset(name, root, split, **options)
    return _one_line(info.value, *needles)


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "s.png"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    yield path
    sock.close()


# ----------------------------------------------------------------------------------------------- load_image
@posix_only
@pytest.mark.timeout(20)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "bird.png"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    _image_error(fifo, str(fifo), "named pipe (FIFO)")


@posix_only
@pytest.mark.timeout(20)
def test_fifo_swapped_in_after_the_check_is_refused_on_the_open_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "race.png"
    os.mkfifo(fifo)
    # the path passes the stat check, then turns out a FIFO when opened (time-of-check to time-of-use)
    monkeypatch.setattr(images_module, "regular_file_problem", lambda path: None)
    _image_error(fifo, "race.png", "named pipe (FIFO)")


@pytest.mark.timeout(20)
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_refused_before_reading() -> None:
    _image_error("/dev/zero", "/dev/zero is a character device, not a regular file")


@posix_only
def test_socket_is_refused(unix_socket: Path) -> None:
    _image_error(unix_socket, str(unix_socket), "is a socket, not a regular file")


def test_folder_is_refused(tmp_path: Path) -> None:
    _image_error(tmp_path, str(tmp_path), "is a folder")


@posix_only
def test_symlink_loop_says_it_is_a_loop(tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop.name)
    other_a, other_b = tmp_path / "a.png", tmp_path / "b.png"
    other_a.symlink_to(other_b.name)
    other_b.symlink_to(other_a.name)
    for path in (loop, other_a):
        message = _image_error(path, str(path), "symlink loop")
        assert "not found" not in message


@posix_only
def test_broken_symlink_says_it_is_broken(tmp_path: Path) -> None:
    link = tmp_path / "bird.png"
    link.symlink_to(tmp_path / "gone.png")
    _image_error(link, str(link), "broken symlink")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_size_cap_counts_bytes_read_not_st_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc files report st_size 0 whatever they hold: a cap that trusts st_size reads them whole
    assert os.stat("/proc/self/maps").st_size == 0
    monkeypatch.setattr(images_module, "MAX_FILE_BYTES", 64)
    _image_error("/proc/self/maps", "/proc/self/maps is larger than 64 bytes")


def test_read_stops_one_byte_past_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(b"x" * 10_000)
    reads: list[int] = []
    real_read = images_module._read_capped

    def spy(file, p, max_bytes):
        data_before = file.tell()
        try:
            return real_read(file, p, max_bytes)
        finally:
            reads.append(file.tell() - data_before)

    monkeypatch.setattr(images_module, "_read_capped", spy)
    with pytest.raises(images_module.NotRegularFileError, match="larger than 100 bytes"):
        images_module.read_regular_file(path, 100)
    assert reads == [101]


def test_control_characters_in_a_name_keep_the_message_on_one_line(tmp_path: Path) -> None:
    _image_error(tmp_path / "two\nlines.png", "not found", "two\\nlines.png")
    _image_error(str(tmp_path / "nul\0.png"), "NUL character")


# ------------------------------------------------------------------------------------------- folder dataset
def _folder(tmp_path: Path) -> lf.Written:
    return lf.make_folder(tmp_path / "data", per_class=2)


def test_folder_skips_hidden_folders_and_files(tmp_path: Path) -> None:
    w = _folder(tmp_path)
    train = w.root / "train"
    lf.write_image(train / ".ipynb_checkpoints" / "img_0-checkpoint.png", (1, 2, 3))
    lf.write_image(train / "crow" / ".ipynb_checkpoints" / "img_0-checkpoint.png", (1, 2, 3))
    lf.write_image(train / "crow" / "._img_0.png", (1, 2, 3))  # macOS resource fork next to the image
    (train / "crow" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    ds = build_dataset("folder", w.root, "train")
    assert ds.classes == ["crow", "finch", "wren"]
    assert sorted(ds.samples) == sorted(w.samples["train"])


@posix_only
@pytest.mark.timeout(20)
def test_folder_self_symlink_adds_no_duplicates(tmp_path: Path) -> None:
    w = _folder(tmp_path)
    crow = w.root / "train" / "crow"
    (crow / "loop").symlink_to(".")  # torchvision's walk followed this 40 times: 41 copies of each crow image
    (crow / "z_alias.png").symlink_to("img_0.png")  # the same file by a second name: kept once, first name
    ds = build_dataset("folder", w.root, "train")
    assert sorted(ds.samples) == sorted(w.samples["train"])


@posix_only
@pytest.mark.timeout(20)  # the old walk never ended here (3 ** depth paths) and grew without bound
def test_folder_links_to_the_split_or_root_folder_are_not_walked(tmp_path: Path) -> None:
    w = _folder(tmp_path)
    crow = w.root / "train" / "crow"
    (crow / "up").symlink_to("..")  # the split folder: would pull finch and wren into crow
    (crow / "top").symlink_to("../..")  # the dataset root
    ds = build_dataset("folder", w.root, "train")
    assert sorted(ds.samples) == sorted(w.samples["train"])


@posix_only
def test_folder_follows_a_linked_class_folder_once(tmp_path: Path) -> None:
    w = _folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (w.root / "train" / "wren").rename(elsewhere)
    (w.root / "train" / "wren").symlink_to(elsewhere, target_is_directory=True)
    ds = build_dataset("folder", w.root, "train")
    assert ds.classes == ["crow", "finch", "wren"] and sorted(ds.samples) == sorted(w.samples["train"])


@posix_only
@pytest.mark.timeout(20)
def test_folder_refuses_a_fifo_named_like_an_image(tmp_path: Path) -> None:
    w = _folder(tmp_path)
    fifo = w.root / "train" / "finch" / "stuck.png"
    os.mkfifo(fifo)
    _dataset_error("folder", w.root, "train", str(fifo), "named pipe (FIFO)")


@posix_only
def test_folder_refuses_a_looping_or_broken_image_link(tmp_path: Path) -> None:
    w = _folder(tmp_path)
    loop = w.root / "train" / "finch" / "loop.jpg"
    loop.symlink_to(loop.name)
    _dataset_error("folder", w.root, "train", str(loop), "symlink loop")
    loop.unlink()
    broken = w.root / "train" / "finch" / "gone.jpg"
    broken.symlink_to("nothing_here.jpg")
    _dataset_error("folder", w.root, "train", str(broken), "broken symlink")


@posix_only
def test_folder_refuses_one_file_in_two_classes(tmp_path: Path) -> None:
    w = _folder(tmp_path)
    link = w.root / "train" / "wren" / "borrowed.png"
    link.symlink_to(w.root / "train" / "crow" / "img_1.png")
    _dataset_error("folder", w.root, "train", str(link), "same file as", "crow", "two labels")


def test_folder_nested_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    # A fixed, low limit: other libraries in the suite raise it (CI saw a limit so high that limit + 100 levels of
    # "/d" passed PATH_MAX), and the tree must stay below PATH_MAX while being deeper than the limit.
    limit = 600
    w = _folder(tmp_path)
    levels = [w.root / "train" / "crow"]
    for _ in range(limit + 100):  # pathlib's mkdir(parents=True) would itself recurse too deep
        levels.append(levels[-1] / "d")
        os.mkdir(levels[-1])
    image = lf.write_image(levels[-1] / "deep.png", (9, 9, 9))
    previous = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(limit)
        try:
            ds = build_dataset("folder", w.root, "train")
        finally:
            sys.setrecursionlimit(previous)
        assert (str(image), 0) in ds.samples and len(ds) == len(w.samples["train"]) + 1
    finally:  # pytest's recursive rmtree cannot remove this tree
        image.unlink()
        for folder in reversed(levels[1:]):
            os.rmdir(folder)


def test_folder_of_only_hidden_class_folders_has_no_classes(tmp_path: Path) -> None:
    lf.write_image(tmp_path / "data" / ".ipynb_checkpoints" / "a.png", (1, 2, 3))
    _dataset_error("folder", tmp_path / "data", "train", "no class sub-folders")


# ------------------------------------------------------------------------------------------------------ CUB
def _cub_line_of(base: Path, file: str, image_id: int) -> int:
    lines = (base / file).read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if line.split()[0] == str(image_id))


def _cub_set(base: Path, file: str, image_id: int, text: str) -> int:
    """Replace the line of ``image_id`` in ``file`` by ``"<id> <text>"``; return its line number."""
    line_no = _cub_line_of(base, file, image_id)
    lines = (base / file).read_text().splitlines()
    lines[line_no - 1] = f"{image_id} {text}"
    (base / file).write_text("\n".join(lines) + "\n")
    return line_no


@pytest.fixture
def cub(tmp_path: Path) -> lf.Written:
    return lf.make_cub(tmp_path / "cub")


@pytest.fixture
def outside_image(tmp_path: Path) -> Path:
    """A real image outside every dataset folder: the file an escaping path would pull in."""
    return lf.write_image(tmp_path / "secret" / "x.png", (5, 5, 5))


@pytest.mark.parametrize("relative", ["../../../secret/x.png", "001.Class_A_bird/../../../../secret/x.png"])
def test_cub_path_leaving_the_dataset_is_refused(cub: lf.Written, outside_image: Path, relative: str) -> None:
    base, image_id = cub.extra["base"], cub.extra["train_ids"][0]
    assert (base / "images" / relative).resolve() == outside_image.resolve()  # the file is really there
    line_no = _cub_set(base, "images.txt", image_id, relative)
    _dataset_error("cub", cub.root, "train", f"images.txt line {line_no}", repr(relative), "outside")


def test_cub_absolute_path_is_refused(cub: lf.Written, outside_image: Path) -> None:
    base, image_id = cub.extra["base"], cub.extra["train_ids"][1]
    for absolute in (str(outside_image), "/etc/passwd"):
        line_no = _cub_set(base, "images.txt", image_id, absolute)
        _dataset_error("cub", cub.root, "train", f"images.txt line {line_no}", repr(absolute), "must be relative")


@posix_only
def test_cub_image_symlink_that_escapes_is_refused(cub: lf.Written, outside_image: Path) -> None:
    victim = Path(cub.samples["train"][2][0])
    victim.unlink()
    victim.symlink_to(outside_image)
    line_no = _cub_line_of(cub.extra["base"], "images.txt", cub.extra["train_ids"][2])
    _dataset_error("cub", cub.root, "train", f"images.txt line {line_no}", "outside the image folder")


@posix_only
def test_cub_images_folder_may_itself_be_a_link(cub: lf.Written, tmp_path: Path) -> None:
    base = cub.extra["base"]
    (base / "images").rename(tmp_path / "other_disk")
    (base / "images").symlink_to(tmp_path / "other_disk", target_is_directory=True)
    assert build_dataset("cub", cub.root, "train").samples == cub.samples["train"]


@posix_only
@pytest.mark.timeout(20)
def test_cub_listed_image_that_is_a_fifo_is_named(cub: lf.Written) -> None:
    victim = Path(cub.samples["test"][0][0])
    victim.unlink()
    os.mkfifo(victim)
    _dataset_error("cub", cub.root, "test", "images.txt", str(victim), "named pipe (FIFO)")


@posix_only
@pytest.mark.timeout(20)
def test_cub_annotation_file_that_is_a_fifo_is_refused(cub: lf.Written) -> None:
    images_txt = cub.extra["base"] / "images.txt"
    images_txt.unlink()
    os.mkfifo(images_txt)
    _dataset_error("cub", cub.root, "train", str(images_txt), "named pipe (FIFO)")


@pytest.mark.parametrize(
    ("box", "needle"),
    [
        ("nan 1 10 10", "not a finite number"),
        ("1 2 inf 10", "not a finite number"),
        ("1 2 10 -inf", "not a finite number"),
        ("-3 2 10 10", "negative coordinate"),
        ("3 -0.5 10 10", "negative coordinate"),
        ("3 2 0 10", "zero or negative width or height"),
        ("3 2 10 -4", "zero or negative width or height"),
    ],
)
def test_cub_bad_box_is_refused_with_its_line(cub: lf.Written, box: str, needle: str) -> None:
    # a test-split image: the box file is checked whole, whichever split is loaded
    line_no = _cub_set(cub.extra["base"], "bounding_boxes.txt", cub.extra["test_ids"][0], box)
    _dataset_error("cub", cub.root, "train", f"bounding_boxes.txt line {line_no}", needle)


@pytest.mark.parametrize("location", ["nan 3", "4 inf", "-2 3"])
def test_cub_bad_part_location_is_refused_with_its_line(cub: lf.Written, location: str) -> None:
    locs = cub.extra["base"] / "parts" / "part_locs.txt"
    lines = locs.read_text().splitlines()
    image_id, part_id, *_ = lines[4].split()
    lines[4] = f"{image_id} {part_id} {location} 1"
    locs.write_text("\n".join(lines) + "\n")
    _dataset_error("cub", cub.root, "train", "part_locs.txt line 5", "finite and >= 0")


def test_cub_empty_split_is_an_error_not_zero_items(cub: lf.Written) -> None:
    split_txt = cub.extra["base"] / "train_test_split.txt"
    split_txt.write_text("".join(f"{line.split()[0]} 0\n" for line in split_txt.read_text().splitlines()))
    _dataset_error("cub", cub.root, "train", "split 'train' has no images", "train_test_split.txt")
    assert len(build_dataset("cub", cub.root, "test")) == 12


def test_cub_files_with_a_utf8_bom_are_read(cub: lf.Written) -> None:
    base = cub.extra["base"]
    for name in ("images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt"):
        (base / name).write_bytes(b"\xef\xbb\xbf" + (base / name).read_bytes())  # Notepad's UTF-8
    ds = build_dataset("cub", cub.root, "train")
    assert ds.samples == cub.samples["train"] and ds.boxes == cub.boxes["train"]
    assert ds.classes == ["Class_A_bird", "Class_B_bird", "Class_C_bird"]


def test_cub_names_with_unicode_line_separators_stay_one_line(cub: lf.Written) -> None:
    classes_txt = cub.extra["base"] / "classes.txt"
    lines = classes_txt.read_text().splitlines()
    lines[1] = "2 002.Caf\x85_bird\u2028two"  # NEL and LINE SEPARATOR: str.splitlines breaks the line there
    classes_txt.write_bytes(("\r\n".join(lines) + "\r\n").encode())  # and Windows line ends
    assert build_dataset("cub", cub.root, "train").classes == ["Class_A_bird", "Caf\x85_bird\u2028two", "Class_C_bird"]


def test_cub_bom_past_the_start_is_still_an_error(cub: lf.Written) -> None:
    images_txt = cub.extra["base"] / "images.txt"
    lines = images_txt.read_text().splitlines()
    lines[2] = "\ufeff" + lines[2]  # only a leading BOM is an encoding mark; inside, it is a stray character
    images_txt.write_text("\n".join(lines) + "\n")
    _dataset_error("cub", cub.root, "train", "images.txt line 3", "<image_id> <image_path>")


# ------------------------------------------------------------------------------------------------------ Dogs
def _dogs_files(root: Path, split: str, files: list[str]) -> None:
    mat = scipy.io.loadmat(root / f"{split}_list.mat")
    mat["file_list"] = lf._cell(files)
    scipy.io.savemat(root / f"{split}_list.mat", {k: v for k, v in mat.items() if not k.startswith("__")})


def test_dogs_path_leaving_images_is_refused(tmp_path: Path) -> None:
    w = lf.make_dogs(tmp_path / "dogs")
    outside = lf.write_image(tmp_path / "x.jpg", (1, 1, 1))
    files = [str(Path(p).relative_to(w.root / "Images")) for p, _ in w.samples["train"]]
    files[2] = "n02085782-Japanese_spaniel/../../../x.jpg"  # passes the "folder of its label" check
    assert (w.root / "Images" / files[2]).resolve() == outside.resolve()
    _dogs_files(w.root, "train", files)
    _dataset_error("dogs", w.root, "train", "train_list.mat entry 3", "outside the image folder")


def test_dogs_empty_list_is_an_error(tmp_path: Path) -> None:
    w = lf.make_dogs(tmp_path)
    scipy.io.savemat(
        w.root / "test_list.mat", {"file_list": np.empty((0, 1), dtype=object), "labels": np.zeros((0, 1))}
    )
    _dataset_error("dogs", w.root, "test", "split 'test' has no images", "test_list.mat")


def test_dogs_hidden_folder_in_images_does_not_shift_labels(tmp_path: Path) -> None:
    w = lf.make_dogs(tmp_path)
    lf.write_image(w.root / "Images" / ".ipynb_checkpoints" / "a.jpg", (1, 1, 1))
    ds = build_dataset("dogs", w.root, "train")
    assert ds.classes == ["Chihuahua", "Japanese_spaniel", "Shih-Tzu"] and ds.samples == w.samples["train"]


def test_dogs_degenerate_xml_box_is_refused(tmp_path: Path) -> None:
    w = lf.make_dogs(tmp_path)
    xml = w.root / "Annotation" / "n02085620-Chihuahua" / "n02085620_100"
    xml.write_text(xml.read_text().replace("<xmax>20</xmax>", "<xmax>1</xmax>", 1))
    ds = build_dataset("dogs", w.root, "train")
    with pytest.raises(DatasetError) as info:
        ds.box(0)
    _one_line(info.value, str(xml), "zero or negative width")


# ------------------------------------------------------------------------------------------------------ Cars
def _cars_set(root: Path, entry: int, **fields) -> None:
    mat_path = root / "stanford_cars" / "devkit" / "cars_train_annos.mat"
    annos = scipy.io.loadmat(mat_path)["annotations"]
    for name, value in fields.items():
        annos[0, entry - 1][name] = value if name == "fname" else np.array([[value]], dtype=np.float64)
    scipy.io.savemat(mat_path, {"annotations": annos})


def test_cars_fname_leaving_the_image_folder_is_refused(tmp_path: Path) -> None:
    w = lf.make_cars(tmp_path / "cars")
    outside = lf.write_image(tmp_path / "x.jpg", (1, 1, 1))
    assert (w.root / "stanford_cars" / "cars_train" / "../../../x.jpg").resolve() == outside.resolve()
    _cars_set(w.root, 2, fname="../../../x.jpg")
    _dataset_error("cars", w.root, "train", "cars_train_annos.mat annotation 2", "'../../../x.jpg'", "outside")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [({"bbox_x2": 1.0}, "zero or negative width"), ({"bbox_y1": float("nan")}, "not a finite number")],
)
def test_cars_bad_box_is_refused(tmp_path: Path, fields: dict, needle: str) -> None:
    w = lf.make_cars(tmp_path)
    _cars_set(w.root, 4, **fields)
    _dataset_error("cars", w.root, "train", "cars_train_annos.mat annotation 4", needle)


# -------------------------------------------------------------------------------------------------- Aircraft
def _aircraft_data(w: lf.Written) -> Path:
    return w.root / "fgvc-aircraft-2013b" / "data"


def test_aircraft_image_id_leaving_the_image_folder_is_refused(tmp_path: Path) -> None:
    w = lf.make_aircraft(tmp_path / "air")
    outside = lf.write_image(tmp_path / "x.jpg", (1, 1, 1))
    data = _aircraft_data(w)
    assert (data / "images" / "../../../../x.jpg").resolve() == outside.resolve()  # the file is really there
    for level in ("variant", "family", "manufacturer"):
        path = data / f"images_{level}_test.txt"
        lines = path.read_text().splitlines()
        lines[1] = "../../../../x " + lines[1].split(" ", 1)[1]
        path.write_text("\n".join(lines) + "\n")
    _dataset_error("aircraft", w.root, "test", "images_variant_test.txt line 2", "'../../../../x.jpg'", "outside")


def test_aircraft_box_with_xmax_below_xmin_is_refused(tmp_path: Path) -> None:
    w = lf.make_aircraft(tmp_path)
    box_txt = _aircraft_data(w) / "images_box.txt"
    lines = box_txt.read_text().splitlines()
    image_id = lines[2].split()[0]
    lines[2] = f"{image_id} 30 2 10 28"
    box_txt.write_text("\n".join(lines) + "\n")
    _dataset_error("aircraft", w.root, "train", "images_box.txt line 3", "zero or negative width")


def test_aircraft_empty_split_is_an_error(tmp_path: Path) -> None:
    w = lf.make_aircraft(tmp_path)
    for level in ("variant", "family", "manufacturer"):
        (_aircraft_data(w) / f"images_{level}_val.txt").write_text("\n")
    _dataset_error("aircraft", w.root, "val", "split 'val' has no images", "images_variant_val.txt")


def test_aircraft_class_files_with_a_bom_are_read(tmp_path: Path) -> None:
    w = lf.make_aircraft(tmp_path)
    data = _aircraft_data(w)
    for name in ("variants.txt", "families.txt", "images_variant_train.txt", "images_box.txt"):
        (data / name).write_bytes(b"\xef\xbb\xbf" + (data / name).read_bytes())
    ds = build_dataset("aircraft", w.root, "train")
    assert ds.classes == list(lf.AIRCRAFT_VARIANTS) and ds.levels == w.extra["levels"]
    assert ds.samples == w.samples["train"] and ds.boxes == w.boxes["train"]


@pytest.mark.timeout(20)
def test_every_loader_decodes_through_the_guarded_door(tmp_path: Path) -> None:
    """The dataset items are read by load_image, so the checks above also hold inside a DataLoader worker."""
    w = _folder(tmp_path)
    ds = build_dataset("folder", w.root, "train")
    path = Path(ds.samples[0][0])
    path.unlink()
    if hasattr(os, "mkfifo"):
        os.mkfifo(path)  # appeared after the dataset was built
        with pytest.raises(ImageError, match="named pipe"):
            ds[0]
    assert isinstance(ds.load(1), Image.Image)
