"""The explorer for researchers (issue 13): the sidebar's dataset picker and the evaluation page, via AppTest.

Every number the pages show is compared with the core (or a naive loop here) on tiny checkpoints and a CUB-layout
fixture; every bad input must end in one clear line, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import fgvc_core
from fgvc_core.app.datasets import choose_dataset, class_mismatch, ground_truth
from fgvc_core.app.evaluation_cache import label_map
from fgvc_core.errors import DatasetError
from fgvc_core.explain.scoring import confusion
from tests.app_fixtures import environment, sample_box, write_app_env, write_cub_checkpoint

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("explorer_env")
    variables = write_app_env(root)
    cub = write_cub_checkpoint(root)
    variables |= {
        "FGVC_DATA_ROOTS": str(root),  # the benchmark and the CUB fixture are both inside
        "FGVC_EVAL_CACHE_DIR": str(root / "eval_cache"),
    }
    with environment(variables):
        yield {"root": root, **variables, **cub}


def switch(at: AppTest, page: str) -> AppTest:
    """Switch page. AppTest's first run of a new page draws the persisted sidebar values but hands the script the
    defaults (measured: the cache key printed from the page was the demo's); a second run uses the chosen ones."""
    at.switch_page(f"pages/{page}.py").run()
    return at.run()


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def pick_dataset(at: AppTest, name: str, root: str, split: str | None = None) -> AppTest:
    at.sidebar.selectbox(key="dataset_name").select(name)
    at.sidebar.text_input(key="dataset_root").input(root)
    at.run()
    if split is not None:
        at.sidebar.selectbox(key="dataset_split").select(split).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def choose_rams(at: AppTest, path: Path) -> AppTest:
    box = at.sidebar.selectbox(key="model_rams_trans")
    box.select(str(path.resolve())).run()
    return at


# ------------------------------------------------------------------------------------------- dataset picker
def test_the_app_opens_on_the_demo_benchmark_with_no_input(env):
    at = open_app()
    assert at.sidebar.selectbox(key="dataset_name").value == "synth"
    assert at.sidebar.selectbox(key="dataset_split").value == "test"
    assert Path(at.sidebar.text_input(key="dataset_root").value).resolve() == Path(env["FGVC_DATA_ROOT"]).resolve()
    assert not at.error and not at.sidebar.error
    samples = sample_box(at).options
    assert samples, "the demo benchmark offers no sample"


def test_a_cub_root_makes_its_test_images_the_pickable_images_and_warns_about_other_classes(env):
    at = pick_dataset(open_app(), "cub", str(env["cub"].root))
    written = env["cub"]
    options = sample_box(at).options
    names = {written.classes[label] for _, label in written.samples["test"]}
    assert {o.split(" · ")[0] for o in options} == names
    # the demo checkpoints have the 4 synth classes, the CUB fixture 4 others: each model says so, with counts
    warnings = [w.value for w in at.sidebar.warning]
    assert "This dataset has 4 classes and the RAMS-Trans checkpoint 4 (0 names in common)" in warnings[0]
    assert any("CRA-SMRA checkpoint 4" in w for w in warnings)
    assert not at.exception


def test_the_cub_checkpoint_matches_the_cub_classes_and_offers_its_data(env):
    at = choose_rams(open_app(), env["checkpoint"])
    buttons = [b for b in at.sidebar.button if b.key == "use_data_rams_trans"]
    assert buttons and "rams_trans_cub.safetensors's data (cub, test)" in buttons[0].label
    buttons[0].click().run()
    assert at.sidebar.selectbox(key="dataset_name").value == "cub"
    assert Path(at.sidebar.text_input(key="dataset_root").value) == env["cub"].root
    assert not [w.value for w in at.sidebar.warning if "RAMS-Trans checkpoint" in w.value]
    assert [w.value for w in at.sidebar.warning if "CRA-SMRA checkpoint" in w.value]  # the synth demo still differs
    assert not at.exception and not at.error


def test_a_root_outside_the_data_roots_is_not_available_and_shows_no_image(env, tmp_path):
    outside = tmp_path.parent.parent  # exists, but is no data root
    for text in (str(outside), "/etc", "../../../../etc", str(Path(env["root"]) / ".." / "..")):
        at = pick_dataset(open_app(), "folder", text)
        assert [e.value for e in at.sidebar.error] == [f"{text}: not available here"]
        assert not at.exception
        assert [i.value for i in at.info] == ["Choose a benchmark sample or upload an image in the sidebar."]


def test_a_wrong_layout_or_empty_root_is_one_line(env):
    at = pick_dataset(open_app(), "cars", str(env["cub"].root))
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and "\n" not in errors[0] and errors[0]
    at = pick_dataset(open_app(), "folder", "  ")
    assert [e.value for e in at.sidebar.error] == ["type the root folder of the Class folders dataset"]
    assert not at.exception


def test_choose_dataset_confines_before_looking_and_checks_the_split(env):
    with pytest.raises(DatasetError, match="^cub has no split 'val'; choose one of test, train$"):
        choose_dataset("cub", str(env["cub"].root), "val")
    with pytest.raises(fgvc_core.errors.FGVCError, match="^/nonexistent/x: not available here$"):
        choose_dataset("cub", "/nonexistent/x", "val")  # the path is checked first: nothing said about the split


def test_ground_truth_reads_the_cub_box_and_visible_keypoints(env):
    written = env["cub"]
    dataset = fgvc_core.build_dataset("cub", written.root, "test")
    for i in range(len(dataset)):
        truth = ground_truth(dataset, i)
        assert truth.object_box == pytest.approx(written.boxes["test"][i])
        visible = [(x, y) for x, y, v in written.extra["test_parts"][i] if v]
        names = [n for n, (_, _, v) in zip(written.extra["part_names"], written.extra["test_parts"][i]) if v]
        assert np.allclose(truth.keypoints.reshape(-1, 2), np.asarray(visible, dtype=float).reshape(-1, 2))
        assert list(truth.keypoint_names) == names


def test_class_mismatch_names_both_counts():
    assert class_mismatch(["a", "b"], ["a", "b"], "RAMS-Trans") is None
    text = class_mismatch(["a", "b", "c"], ["a", "x"], "CRA-SMRA")
    assert text.startswith("This dataset has 3 classes and the CRA-SMRA checkpoint 2 (1 names in common)")


# -------------------------------------------------------------------------------------------- core summaries
def naive_confusion(labels, preds, k):
    m = [[0] * k for _ in range(k)]
    for y, p in zip(labels, preds):
        if y >= 0:
            m[y][p] += 1
    return np.array(m)


def test_confusion_summaries_match_naive_loops():
    rng = np.random.default_rng(0)
    k, n = 5, 200
    labels = rng.integers(-1, k, n)
    topk = np.stack([rng.permutation(k) for _ in range(n)])
    matrix = confusion.confusion_matrix(labels, topk[:, 0], k)
    assert (matrix == naive_confusion(labels, topk[:, 0], k)).all()
    known = [(y, row) for y, row in zip(labels, topk) if y >= 0]
    for kk in (1, 3, 5):
        expected = sum(y in row[:kk] for y, row in known) / len(known)
        assert confusion.topk_accuracy(labels, topk, kk) == pytest.approx(expected)
    per_class = confusion.per_class_accuracy(matrix)
    for c in range(k):
        rows = [row[0] for y, row in known if y == c]
        assert per_class[c] == pytest.approx(sum(p == c for p in rows) / len(rows))
    pairs = confusion.confused_pairs(matrix, limit=100)
    totals = {(a, b): matrix[a, b] + matrix[b, a] for a in range(k) for b in range(a + 1, k)}
    assert [(p.a, p.b) for p in pairs] == sorted(
        (ab for ab, t in totals.items() if t), key=lambda ab: (-totals[ab], ab)
    )
    cell = confusion.cell_images(labels, topk[:, 0], 2, 3)
    assert cell == [i for i in range(n) if labels[i] == 2 and topk[i, 0] == 3]


def test_per_class_accuracy_is_nan_for_a_class_without_images():
    acc = confusion.per_class_accuracy(np.array([[2, 0], [0, 0]]))
    assert acc[0] == 1.0 and np.isnan(acc[1])
    assert np.isnan(confusion.topk_accuracy([-1, -1], [[0], [1]], 1))


def test_label_map_by_name_then_by_index():
    assert label_map(["b", "a", "z"], ["a", "b"]) == [1, 0, -1]
    assert label_map(["x", "y"], ["a", "b"]) == [0, 1]


# -------------------------------------------------------------------------------------------- evaluation page
def expected_predictions(path: Path, root: Path):
    model, meta = fgvc_core.load_checkpoint(path)
    dataset = fgvc_core.build_dataset("cub", root, "test")
    transform = fgvc_core.build_transform(meta)
    probs = model.predict(torch.stack([transform(dataset.load(i)) for i in range(len(dataset))]))
    labels = torch.tensor([y for _, y in dataset.samples])
    return probs, labels


def test_evaluation_page_computes_caches_and_reopens_from_disk(env):
    at = choose_rams(open_app(), env["checkpoint"])
    at = pick_dataset(at, "cub", str(env["cub"].root))
    switch(at, "evaluation")
    assert not at.exception and not at.error
    cache = Path(env["FGVC_EVAL_CACHE_DIR"])
    before = set(cache.glob("*.json")) if cache.exists() else set()
    at.button(key="eval_run_rams_trans").click().run()
    assert not at.exception and not at.error
    probs, labels = expected_predictions(env["checkpoint"], env["cub"].root)
    top1 = float((probs.argmax(1) == labels).float().mean())
    top5 = float((probs.topk(min(5, probs.shape[1]), 1).indices == labels[:, None]).any(1).float().mean())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["top-1"] == f"{100 * top1:.1f}%"
    assert metrics["top-5"] == f"{100 * top5:.1f}%"
    assert metrics["images"] == f"{len(labels)} of {len(labels)}"
    written = set(cache.glob("*.json")) - before
    assert len(written) == 1
    stored = json.loads(next(iter(written)).read_text())
    assert stored["topk"] == probs.topk(min(5, probs.shape[1]), 1).indices.tolist()
    assert "computed now and cached on disk" in " ".join(c.value for c in at.caption)
    # a fresh session re-opens it from the file, without the button
    again = choose_rams(open_app(), env["checkpoint"])
    again = pick_dataset(again, "cub", str(env["cub"].root))
    switch(again, "evaluation")
    assert not [b for b in again.button if b.key == "eval_run_rams_trans"]
    assert {m.label: m.value for m in again.metric}["top-1"] == f"{100 * top1:.1f}%"
    assert "read from the evaluation cache" in " ".join(c.value for c in again.caption)


def test_a_confusion_cell_lists_its_images_and_open_makes_one_the_current_image(env):
    at = choose_rams(open_app(), env["checkpoint"])
    at = pick_dataset(at, "cub", str(env["cub"].root))
    switch(at, "evaluation")
    if [b for b in at.button if b.key == "eval_run_rams_trans"]:
        at.button(key="eval_run_rams_trans").click().run()
    probs, labels = expected_predictions(env["checkpoint"], env["cub"].root)
    preds = probs.argmax(1)
    picker = at.selectbox(key="eval_cell")
    cells = sorted({(int(y), int(p)) for y, p in zip(labels, preds)})
    assert len(picker.options) == len(cells)  # one entry per non-empty cell
    true_class, predicted = cells[-1]
    picker.set_value((true_class, predicted)).run()
    expected = [i for i in range(len(labels)) if labels[i] == true_class and preds[i] == predicted]
    opens = [b.key for b in at.button if b.key and b.key.startswith("cell_open_")]
    assert opens == [f"cell_open_{i}" for i in expected]
    wrong = [i for i in range(len(labels)) if labels[i] != preds[i]]
    assert [b.key for b in at.button if b.key and b.key.startswith("wrong_open_")] == [f"wrong_open_{i}" for i in wrong]
    at.button(key=f"cell_open_{expected[-1]}").click().run()
    assert not at.exception
    assert sample_box(at).value == expected[-1]
    assert any(f"Image #{expected[-1]} is now the current image" in s.value for s in at.success)
    switch(at, "overview")
    assert not at.exception
    assert sample_box(at).value == expected[-1]


# ------------------------------------------------------------------------------------------ both models agree
def naive_ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def naive_pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return cov / (sum((a - mx) ** 2 for a in x) ** 0.5 * sum((b - my) ** 2 for b in y) ** 0.5)


def naive_top(values, fraction):
    count = max(1, int(np.ceil(fraction * len(values) - 1e-9)))
    return set(sorted(range(len(values)), key=lambda i: (-values[i], i))[:count])


def test_map_agreement_matches_a_naive_recomputation():
    from fgvc_core.explain.scoring.agreement import map_agreement, resample

    rng = np.random.default_rng(1)
    a = rng.random((14, 14))
    b = np.round(rng.random((7, 7)), 1)  # ties
    got = map_agreement(a, b, fraction=0.2, grid=(28, 28))
    ra, rb = resample(a, (28, 28)).reshape(-1).tolist(), resample(b, (28, 28)).reshape(-1).tolist()
    ta, tb = naive_top(ra, 0.2), naive_top(rb, 0.2)
    assert got.iou == pytest.approx(len(ta & tb) / len(ta | tb))
    assert got.spearman == pytest.approx(naive_pearson(naive_ranks(ra), naive_ranks(rb)))
    same = map_agreement(a, a, fraction=0.2)
    assert same.iou == 1.0 and same.spearman == pytest.approx(1.0)
    assert map_agreement(a, -a, fraction=0.2).spearman == pytest.approx(-1.0)


def test_resample_keeps_a_constant_map_and_refuses_a_non_map():
    from fgvc_core.explain.scoring.agreement import map_agreement, resample

    assert np.allclose(resample(np.full((3, 5), 0.4), (8, 8)), 0.4)
    assert np.isnan(map_agreement(np.ones((4, 4)), np.eye(4)).spearman)
    with pytest.raises(fgvc_core.errors.ConfigError, match="non-empty 2-d"):
        resample(np.ones(4))


def test_overview_shows_both_maps_and_their_core_agreement(env):
    from fgvc_core.explain.attribution.cam import stage_cams
    from fgvc_core.explain.scoring.agreement import map_agreement

    at = open_app()
    ckpt = Path(env["FGVC_CHECKPOINT_DIR"])
    index = sample_box(at).value
    image = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test").load(index)
    rams, rmeta = fgvc_core.load_checkpoint(ckpt / "rams_trans_demo.safetensors")
    cra, cmeta = fgvc_core.load_checkpoint(ckpt / "cra_smra_demo.safetensors")
    trace = rams.trace(
        fgvc_core.build_transform(rmeta)(image)[None], original_size=image.size, preprocess=rmeta["preprocess"]
    )
    x = fgvc_core.build_transform(cmeta)(image)[None]
    target = int(cra.predict(x).argmax())
    cam = stage_cams(cra, x, target_class=target, method="gradcam")[5][0]
    expected = map_agreement(trace.scales[0].rollout[0].numpy(), np.asarray(cam), 0.2)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["IoU of the top 20%"] == f"{expected.iou:.3f}"
    assert metrics["Spearman ρ"] == f"{expected.spearman:+.3f}"
    assert not at.error and not at.exception


# ------------------------------------------------------------------------------------------- ground-truth parts
def image_captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions if c and "peak" in c]


def test_parts_toggle_draws_the_deciding_parts_and_says_whether_each_stage_peak_hits(env):
    from fgvc_core.explain.attribution.cam import stage_cams
    from fgvc_core.explain.scoring import metrics
    from fgvc_core.explain.scoring.evaluation import ground_truth_boxes

    at = open_app()
    switch(at, "gradcam")
    plain = image_captions(at)
    assert plain and not any("deciding part" in c for c in plain)
    at.sidebar.toggle(key="show_parts").set_value(True).run()
    assert not at.exception and not at.error
    index = sample_box(at).value
    dataset = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test")
    image = dataset.load(index)
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / "cra_smra_demo.safetensors")
    x = fgvc_core.build_transform(meta)(image)[None]
    target = int(model.predict(x).argmax())
    cams = stage_cams(model, x, target_class=target, method="gradcam")
    boxes = metrics.part_boxes_to_input(ground_truth_boxes(dataset, index)[0], image.size, meta["preprocess"])
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
    for stage, m in cams.items():
        hit = bool(metrics.pointing_game(np.asarray(m[0])[None], [boxes], image_size=tuple(x.shape[-2:]))[0])
        word = "hits a deciding part" if hit else "misses every deciding part"
        assert any(c.startswith(f"stage {stage} ·") and c.endswith(word) for c in image_captions(at)), stage


def naive_boxes_in_frame(boxes, crop, size):
    out = []
    for x, y, w, h in boxes:
        cx0, cy0, cx1, cy1 = crop
        sx, sy = size / (cx1 - cx0), size / (cy1 - cy0)
        corners = [(x - cx0) * sx, (y - cy0) * sy, (x + w - cx0) * sx, (y + h - cy0) * sy]
        x0, y0, x1, y1 = (min(max(v, 0.0), size) for v in corners)
        out.append((x0, y0, x1 - x0, y1 - y0))
    return np.array(out)


def test_boxes_in_frame_and_peak_readout_match_naive_geometry():
    from fgvc_core.explain.scoring.map_readout import boxes_in_frame, peak_readout

    boxes = np.array([[10.0, 20.0, 8.0, 6.0], [0.0, 0.0, 4.0, 4.0], [60.0, 60.0, 10.0, 10.0]])
    crop = (8.0, 16.0, 40.0, 48.0)  # a 32 px crop resized to 64 px: scale 2
    assert np.allclose(boxes_in_frame(boxes, crop, 64), naive_boxes_in_frame(boxes, crop, 64))
    assert np.allclose(boxes_in_frame(boxes, None, 64), naive_boxes_in_frame(boxes, (0, 0, 64, 64), 64))
    m = np.zeros((4, 4))
    m[1, 2] = 1.0  # cell (row 1, col 2) of a 4x4 grid over 64 px: its upsampled peak is the cell's centre
    readout = peak_readout(m, (64, 64), np.array([[32.0, 16.0, 16.0, 16.0]]))
    # bilinear upsampling ties the four pixels round the centre (40, 24); the first of them in row-major order wins
    assert (readout.x, readout.y) == (39.5, 23.5) and readout.hit is True
    assert peak_readout(m, (64, 64), np.array([[0.0, 0.0, 16.0, 16.0]])).hit is False
    assert peak_readout(m, (64, 64), None).hit is None


def hit_word(model_map, boxes, frame):
    from fgvc_core.explain.scoring import metrics

    hit = bool(metrics.pointing_game(np.asarray(model_map)[None], [boxes], image_size=frame)[0])
    return "hits a deciding part" if hit else "misses every deciding part"


def demo_rams_input(env, at):
    from fgvc_core.explain.scoring import metrics
    from fgvc_core.explain.scoring.evaluation import ground_truth_boxes

    index = sample_box(at).value
    dataset = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test")
    image = dataset.load(index)
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / "rams_trans_demo.safetensors")
    x = fgvc_core.build_transform(meta)(image)[None]
    boxes = metrics.part_boxes_to_input(ground_truth_boxes(dataset, index)[0], image.size, meta["preprocess"])
    return model, x, boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]


@pytest.mark.parametrize("page", ["rollout", "dppm"])
def test_parts_toggle_on_the_rollout_and_dppm_panels_says_whether_the_rollout_peak_hits(env, page):
    at = open_app()
    switch(at, page)
    assert not any("deciding part" in c for c in image_captions(at))
    at.sidebar.toggle(key="show_parts").set_value(True).run()
    assert not at.exception and not at.error
    model, x, boxes = demo_rams_input(env, at)
    rollout = model.trace(x).scales[0].rollout[0]
    captions = image_captions(at)
    rollout_captions = [c for c in captions if "rollout" in c or c.startswith("class-agnostic")]
    assert rollout_captions and rollout_captions[0].endswith(hit_word(rollout, boxes, tuple(x.shape[-2:])))
    if page == "rollout":  # the gradient rollout names the target's probability beside its map
        probs = model.trace(x).scales[0].probs[0]
        assert any(f"{100 * float(probs.max()):.1f}%" in c and "deciding part" in c for c in captions)


def test_parts_toggle_on_the_vit_cam_panel(env):
    from fgvc_core.explain.attribution.vit_cam import rams_trans_cam

    at = open_app()
    switch(at, "gradcam")
    at.sidebar.toggle(key="show_parts").set_value(True).run()
    model, x, boxes = demo_rams_input(env, at)
    target = int(model.trace(x).probs.argmax())
    cam = rams_trans_cam(model, x, target=target, method="gradcam")[0]
    vit = [c for c in image_captions(at) if c.startswith("RAMS-Trans last block")]
    assert vit and vit[0].endswith(hit_word(cam, boxes, tuple(x.shape[-2:])))


def test_a_cub_image_has_its_object_box_and_the_toggle(env):
    at = pick_dataset(choose_rams(open_app(), env["checkpoint"]), "cub", str(env["cub"].root))
    switch(at, "rollout")
    at.sidebar.toggle(key="show_parts").set_value(True).run()
    assert not at.exception and not at.error
    assert any("deciding part" in c for c in image_captions(at))


# ------------------------------------------------------------------------------------------- OOD honesty
def naive_quantile(values, q):
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def test_calibrate_threshold_is_the_naive_5th_percentile_and_refuses_nonsense():
    from fgvc_core.errors import ConfigError
    from fgvc_core.explain.scoring.ood import calibrate_threshold, is_unfamiliar

    values = list(np.random.default_rng(3).uniform(0.2, 1.0, 37))
    assert calibrate_threshold(values) == pytest.approx(naive_quantile(values, 0.05))
    assert is_unfamiliar([0.1, 0.2, 0.7], 0.71) and not is_unfamiliar([0.1, 0.2, 0.7], 0.7)
    for bad in ([], [0.5, float("nan")]):
        with pytest.raises(ConfigError):
            calibrate_threshold(bad)


def noise_png(seed: int = 5) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(at: AppTest, data: bytes) -> AppTest:
    at.sidebar.radio(key="image_source").set_value("Upload").run()
    at.sidebar.file_uploader[0].set_value(("noise.png", data, "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


OOD_TEXT = "This model knows only these 4 classes of"


def test_an_upload_below_the_calibrated_threshold_is_flagged_as_the_naive_percentile_says(env):
    data = noise_png()
    at = upload(open_app(), data)
    dataset = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test")
    for kind in ("rams_trans", "cra_smra"):
        model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / f"{kind}_demo.safetensors")
        transform = fgvc_core.build_transform(meta)
        held_out = [float(model.predict(transform(dataset.load(i))[None]).max()) for i in range(len(dataset))]
        threshold = naive_quantile(held_out, 0.05)
        p = float(model.predict(transform(fgvc_core.load_image(data))[None]).max())
        title = "RAMS-Trans" if kind == "rams_trans" else "CRA-SMRA"
        warned = [w.value for w in at.main.warning if OOD_TEXT in w.value and f"below {threshold:.1%}" in w.value]
        assert bool(warned) == (p < threshold), (title, p, threshold)
    stored = sorted((Path(env["FGVC_EVAL_CACHE_DIR"])).glob("ood_*.json"))
    assert len(stored) == 2 and all(json.loads(f.read_text())["n"] == len(dataset) for f in stored)


def write_with_threshold(env, value: float) -> Path:
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / "cra_smra_demo.safetensors")
    path = Path(env["root"]) / "checkpoints" / f"cra_smra_ood{value:g}.safetensors"
    fgvc_core.save_checkpoint(model, path, {**meta, "ood": {"max_softmax_threshold": value}})
    return path


def test_a_sidecar_threshold_is_used_and_a_sample_of_the_benchmark_is_never_flagged(env):
    high, low = write_with_threshold(env, 0.999), write_with_threshold(env, 0.0)
    at = open_app()
    at.sidebar.selectbox(key="model_cra_smra").select(str(high.resolve())).run()
    assert not [w for w in at.main.warning if OOD_TEXT in w.value]  # a dataset sample, not an upload
    upload(at, noise_png())
    warned = [w.value for w in at.main.warning if OOD_TEXT in w.value]
    assert len(warned) == 1 and warned[0].startswith(f"{OOD_TEXT} Generated benchmark (synth); this prediction is")
    assert "threshold from the checkpoint's sidecar" in warned[0] and "below 99.9%" in warned[0]
    at.sidebar.selectbox(key="model_cra_smra").select(str(low.resolve())).run()
    assert not [w for w in at.main.warning if "threshold from the checkpoint's sidecar" in w.value]


def test_the_overview_names_the_training_data_and_classes(env):
    at = open_app()
    values = [str(v) for frame in at.dataframe for v in frame.value.get("value", [])]
    classes = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test").classes
    assert any(v.startswith("synth · ") and "(train split; tested on test)" in v for v in values)
    assert ", ".join(classes) in values


def test_an_animated_upload_says_frame_0_is_used(env):
    import io

    from PIL import Image

    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    at = open_app()
    at.sidebar.radio(key="image_source").set_value("Upload").run()
    at.sidebar.file_uploader[0].set_value(("moving.gif", buffer.getvalue(), "image/gif")).run()
    assert not at.exception
    assert [i.value for i in at.sidebar.info] == ["An animation of 3 frames: only frame 0 is used."]
    assert not at.main.error  # and the Overview shows the upload with both crops drawn
    assert any("what RAMS-Trans (red) and CRA-SMRA (blue) see" in c for i in at.image for c in i.captions if c)


def test_a_map_of_a_near_zero_class_says_so_and_stage_overlap_is_the_naive_iou():
    from fgvc_core.app.map_panels import probability_words
    from fgvc_core.explain.scoring.map_readout import top_region_iou

    assert probability_words(0.004, "Red").startswith(" · p(Red) 0.4% · the model gives this class almost no")
    assert "almost no" not in probability_words(0.2, "Red")
    rng = np.random.default_rng(0)
    a, b = rng.random((8, 8)), rng.random((8, 8))
    k = round(0.2 * 64)
    top_a, top_b = set(np.argsort(-a.ravel())[:k]), set(np.argsort(-b.ravel())[:k])
    assert top_region_iou(a, b) == pytest.approx(len(top_a & top_b) / len(top_a | top_b))
    assert top_region_iou(a, a) == 1.0


# ------------------------------------------------------------------------------------------------ CRAM ω = 0
def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_omega_0_draws_S_as_dots_at_0_on_a_fixed_axis_instead_of_an_empty_panel(env):
    at = open_app("cram")
    at.slider(key="cram_delta").set_value(0.6)
    at.slider(key="cram_omega").set_value(0.0).run()
    assert not at.exception, [e.value for e in at.exception]
    figure = next(f for f in charts(at) if "channels suppressed (red)" in f["layout"]["title"]["text"])
    by_axis = {(t["type"], t.get("yaxis", "y")): t for t in figure["data"]}
    i_star = np.asarray(by_axis[("bar", "y2")]["y"])
    naive = np.where(i_star >= 0.6 * i_star.max(), 0.0, 1.0)  # S = ω = 0 where suppressed, 1 elsewhere
    assert (naive == 0).any(), "nothing suppressed: the test would not see the empty panel"
    assert by_axis[("bar", "y3")]["y"] == pytest.approx(list(naive))
    dots = by_axis[("scatter", "y3")]
    assert dots["x"] == by_axis[("bar", "y3")]["x"] and dots["y"] == pytest.approx(list(naive))
    assert figure["layout"]["yaxis3"]["range"] == [-0.05, 1.05]
    titles = [a["text"] for a in figure["layout"]["annotations"]]
    assert "S = ω = 0 on a suppressed channel (red), 1 elsewhere: suppressed channels are zeroed (dots at 0)" in titles


# ------------------------------------------------------------------------------------ shared CAM colour scale
def naive_raw_gradcams(model, x) -> dict[int, np.ndarray]:
    """Grad-CAM written out: ReLU(Σ_c mean(∂y/∂A_c) · A_c) on each stage's tap, for the combined prediction."""
    from fgvc_core.explain.attribution.cam import StageCamModel

    wrapper = StageCamModel(model, (3, 4, 5))
    with torch.enable_grad():
        logits = wrapper(x)
        target = wrapper.combined_probs.argmax(dim=-1)
        loss = logits[torch.arange(x.shape[0]), target].sum()
        taps = [wrapper.tap_outputs[s] for s in (3, 4, 5)]
        grads = torch.autograd.grad(loss, taps)
    return {
        s: torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)).detach().numpy()
        for s, a, g in zip((3, 4, 5), taps, grads)
    }


def test_shared_stage_cams_are_the_raw_maps_over_one_common_max_and_the_default_is_unchanged():
    import cv2

    from fgvc_core.explain.attribution.cam import stage_cams
    from tests.app_fixtures import CRA_SIZE, tiny_cra

    model = tiny_cra(0).eval()
    x = torch.randn(2, 3, CRA_SIZE, CRA_SIZE, generator=torch.Generator().manual_seed(3))
    per_map = stage_cams(model, x)
    assert all((a == b).all() for a, b in zip(per_map.values(), stage_cams(model, x, normalise="per_map").values()))
    shared = stage_cams(model, x, normalise="shared")
    raw = naive_raw_gradcams(model, x)
    for b in range(x.shape[0]):
        resized = {s: cv2.resize(np.float32(raw[s][b]), (CRA_SIZE, CRA_SIZE)) for s in raw}
        common = max(float(m.max()) for m in resized.values())
        assert max(float(shared[s][b].max()) for s in shared) == pytest.approx(1.0, abs=1e-6)
        for s, m in resized.items():
            assert shared[s][b] == pytest.approx(m / common, abs=1e-5)
            # the per-map map is (raw − min)/(max − min): back to raw values, over the common max
            low, high = float(m.min()), float(m.max())
            assert shared[s][b] == pytest.approx((per_map[s][b] * (high - low) + low) / common, abs=1e-5)
    weakest = min((float(shared[s][0].max()), s) for s in shared)[1]
    assert shared[weakest][0].max() < 0.999 and per_map[weakest][0].max() == pytest.approx(1.0, abs=1e-5)
    refused = "^unknown normalise 'global'; choose one of per_map, shared$"
    with pytest.raises(fgvc_core.errors.ConfigError, match=refused):
        stage_cams(model, x, normalise="global")


def test_the_gradcam_shared_scale_toggle_shows_each_stage_peak_over_the_common_max(env):
    from fgvc_core.explain.attribution.cam import stage_cams

    at = open_app("gradcam")
    index = sample_box(at).value
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / "cra_smra_demo.safetensors")
    image = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test").load(index)
    x = fgvc_core.build_transform(meta)(image)[None]
    delta = at.slider(key="cam_delta").value

    def peaks() -> list[str]:
        stage = [c for c in image_captions(at) if c.startswith("stage ")]
        return [c.split(" · peak ")[1].split(" ")[0] for c in stage]

    assert peaks() == ["1.000"] * 3  # per map: every stage stretched to peak 1
    at.toggle(key="cam_shared").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    shared = stage_cams(model, x, delta=delta, normalise="shared")
    expected = [f"{float(shared[s][0].max()):.3f}" for s in (3, 4, 5)]
    assert peaks() == expected and "1.000" in expected and len(set(expected)) > 1
    assert "One colour scale: each peak is that stage's raw maximum over the strongest stage's." in [
        c.value for c in at.caption
    ]
