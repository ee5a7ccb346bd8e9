"""Static (matplotlib) and interactive (plotly) figures: panels, the numbers in titles, and the exact data drawn."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

import fgvc_core
from fgvc_core.data.transforms import denormalize, preprocess_config
from fgvc_core.engine.logging import read_metrics_csv
from fgvc_core.errors import ConfigError
from fgvc_core.explain.rendering import figures, plots
from fgvc_core.explain.rendering.overlay import figure_to_png_bytes

NAMES = ["alpha", "beta", "gamma", "delta"]
PRE = preprocess_config("demo", 32)
SUPPRESSED_RGBA = (214 / 255, 39 / 255, 40 / 255, 1.0)


@pytest.fixture(scope="module")
def rams():
    torch.manual_seed(0)
    model = fgvc_core.build_model(
        "rams_trans", 4, backbone="vit_tiny_patch16_224", img_size=32, patch_size=8, drop_rate=0.0,
        vit_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2},
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    original = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    trace = model.trace(x, threshold=1.0, original_size=[original.size] * 2, preprocess=PRE)
    return trace, original


@pytest.fixture(scope="module")
def cra():
    torch.manual_seed(0)
    model = fgvc_core.build_model(
        "cra_smra", 4, backbone="resnet_tiny", conv_channels=32, conv_mid_channels=16, head_hidden=32
    ).eval()
    return model.trace(torch.randn(2, 3, 32, 32), delta=0.8)


def _pct(p) -> str:
    return f"{100 * float(p):.1f}%"


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


# ------------------------------------------------------------------------------------------ RAMS-Trans views
def test_dppm_figure_panels_and_titles_carry_each_scales_numbers(rams):
    trace, original = rams
    fig = figures.dppm_figure(trace, original, NAMES, index=1, k=3, preprocess=PRE)
    assert len(fig.axes) == 4 * len(trace.scales)
    for s, scale in enumerate(trace.scales):
        probs = scale.probs[1]
        top = int(torch.argmax(probs))
        pred_ax = fig.axes[4 * s + 3]
        assert pred_ax.get_title() == f"scale{s + 1}: {NAMES[top]} {_pct(probs[top])}"
        widths = [p.get_width() for p in pred_ax.patches]
        np.testing.assert_allclose(widths, sorted(probs.tolist(), reverse=True)[:3], rtol=1e-6)
        mask_title = fig.axes[4 * s + 2].get_title()
        assert (
            f"{int(scale.mask[1].sum())}/16 cells" in mask_title
            and f"kept {int(scale.component[1].sum())}" in mask_title
        )
    # Scale 1 shows the original image with scale 2's box in original pixels.
    first = fig.axes[0]
    assert first.images[0].get_array().shape[:2] == (48, 64)
    box = ",".join(f"{v:.0f}" for v in trace.scales[1].box_original[1].tolist())
    assert first.get_title().endswith(f"(original px): {box}")
    combined = trace.probs[1]
    assert fig._suptitle.get_text().endswith(f"{NAMES[int(combined.argmax())]} {_pct(combined.max())}")
    # Scale 2 shows its own crop, de-normalised; only the outline of its proposal box (1 px) is painted over it.
    crop = (denormalize(trace.scales[1].crop[1], PRE).permute(1, 2, 0).numpy() * 255).round()
    shown = np.asarray(fig.axes[4].images[0].get_array(), dtype=float)
    x0, y0, x1, y1 = (int(round(v)) for v in trace.scales[1].proposal_box[1].tolist())
    outline = np.zeros((32, 32), bool)
    outline[y0:y1, [x0, x1 - 1]] = True
    outline[[y0, y1 - 1], x0:x1] = True
    changed = np.abs(shown - crop).max(axis=2) > 1
    assert changed.any() and not (changed & ~outline).any()


def test_attention_layers_figure_shows_cls_rows_per_layer_and_head(rams):
    trace, _ = rams
    fig = figures.attention_layers_figure(trace, scale=1, index=1)
    atts = trace.scales[1].attentions
    layers, heads = len(atts), atts[0].shape[1]
    assert len(fig.axes) == layers * (heads + 1)
    for layer in range(layers):
        for head in range(heads + 1):
            ax = fig.axes[layer * (heads + 1) + head]
            a = atts[layer][1]
            expected = (a[head, 0, 1:] if head < heads else a[:, 0, 1:].mean(0)).reshape(4, 4).numpy()
            np.testing.assert_allclose(ax.images[0].get_array(), expected, rtol=1e-6)
            assert ax.get_title().endswith(f"max {expected.max():.3f}")
    sub = figures.attention_layers_figure(trace, layers=[1], heads=[0], include_mean=False)
    assert len(sub.axes) == 1 and sub.axes[0].get_title().startswith("L2 h1")
    with pytest.raises(ConfigError):
        figures.attention_layers_figure(trace, layers=[layers])


def test_rollout_figure_map_panel_and_peak(rams):
    trace, _ = rams
    rollout = trace.scales[0].rollout[0]
    fig = figures.rollout_figure(trace.scales[0].crop[0], rollout, "my rollout", PRE)
    panels = _image_axes(fig)
    assert len(panels) == 3 and fig._suptitle.get_text() == "my rollout"
    np.testing.assert_allclose(panels[1].images[0].get_array(), rollout.numpy())
    r, c = divmod(int(rollout.argmax()), rollout.shape[1])
    assert panels[1].get_title().endswith(f"peak {rollout.max():.3f} at ({r},{c})")
    assert Image.open(io.BytesIO(figure_to_png_bytes(fig))).size[0] > 100


def test_prediction_figure_bars_and_title():
    probs = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.05, 0.15, 0.2, 0.6]])
    fig = figures.prediction_figure(probs, NAMES, k=3, index=1, title="combined")
    ax = fig.axes[0]
    assert ax.get_title() == "combined: delta 60.0%"
    np.testing.assert_allclose([p.get_width() for p in ax.patches], [0.6, 0.2, 0.15], rtol=1e-6)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["delta", "gamma", "beta"]
    with pytest.raises(ConfigError):
        figures.prediction_figure(probs, NAMES[:3])


# ---------------------------------------------------------------------------------------------- CRA-SMRA views
def test_stage_cam_figure_one_overlay_per_stage_with_peaks():
    rng = np.random.default_rng(0)
    cams = {s: rng.random((1, 32, 32)).astype(np.float32) for s in (3, 4, 5)}
    cams[5][:] = 0.5  # a flat map has no peak
    fig = figures.stage_cam_figure(torch.randn(3, 32, 32), cams, titles=["s3", "s4", "s5"], preprocess=PRE)
    assert len(fig.axes) == 4
    for ax, s in zip(fig.axes[1:3], (3, 4)):
        r, c = np.unravel_index(int(np.argmax(cams[s][0])), (32, 32))
        assert ax.get_title() == f"s{s}\npeak at x={c}, y={r}"
    assert fig.axes[3].get_title() == "s5\nflat map (no peak)"


def test_cram_channels_figure_bars_equal_the_trace(cra):
    st = cra.stage(4)
    fig = figures.cram_channels_figure(cra, 4, index=1)
    assert len(fig.axes) == 3
    importance = st.importance[1]
    order = sorted(range(importance.numel()), key=lambda c: -float(importance[c]))
    naive_soft = torch.softmax(importance, 0)
    naive_suppressed = naive_soft >= 0.8 * naive_soft.max()
    for ax, values in zip(fig.axes, (importance, st.importance_softmax[1], st.suppression[1])):
        np.testing.assert_allclose([p.get_height() for p in ax.patches], values[order].numpy(), rtol=1e-6)
        red = [p.get_facecolor() == pytest.approx(SUPPRESSED_RGBA) for p in ax.patches]
        assert red == naive_suppressed[order].tolist()
    line = fig.axes[1].lines[0].get_ydata()[0]
    assert line == pytest.approx(0.8 * float(naive_soft.max()), rel=1e-5)
    n = int(naive_suppressed.sum())
    assert f"{n}/{importance.numel()} channels suppressed" in fig._suptitle.get_text()
    top = figures.cram_channels_figure(cra, 4, top_k=5, sort=False)
    top_channels = sorted(sorted(range(importance.numel()), key=lambda c: -float(st.importance[0, c]))[:5])
    np.testing.assert_allclose([p.get_height() for p in top.axes[0].patches], st.importance[0, top_channels].numpy())


def test_cram_channels_figure_refuses_a_variant_without_importance(cra):
    no_cram = dataclasses.replace(cra, stages=tuple(dataclasses.replace(s, importance=None) for s in cra.stages))
    with pytest.raises(ConfigError, match="no channel importance"):
        figures.cram_channels_figure(no_cram, 3)
    with pytest.raises(ConfigError, match="source='stage'"):
        figures.channel_maps_figure(no_cram, 3)


def test_channel_maps_figure_top_and_bottom_channels(cra):
    st = cra.stage(3)
    fig = figures.channel_maps_figure(cra, 3, k=3, index=1)
    panels = _image_axes(fig)
    assert len(panels) == 6
    importance, x = st.importance[1], st.stage_output[1]
    ranked = sorted(range(importance.numel()), key=lambda c: -float(importance[c]))
    expected = ranked[:3] + ranked[-3:]
    reweighted = importance[:, None, None] * x
    for ax, c in zip(panels, expected):
        np.testing.assert_allclose(ax.images[0].get_array(), reweighted[c].numpy(), rtol=1e-5, atol=1e-7)
        assert f"c{c}: I={float(importance[c]):.3f}" in ax.get_title()
        assert ("(supp.)" in ax.get_title()) == bool(st.suppressed_channels[1, c])
        assert ax.images[0].get_clim() == pytest.approx((float(reweighted.min()), float(reweighted.max())), rel=1e-5)
    enhanced = figures.channel_maps_figure(cra, 3, k=2, source="enhanced")
    best = int(st.enhanced[0].flatten(1).amax(1).argmax())
    np.testing.assert_allclose(_image_axes(enhanced)[0].images[0].get_array(), st.enhanced[0, best].numpy(), rtol=1e-6)
    with pytest.raises(ConfigError):
        figures.channel_maps_figure(cra, 3, k=st.stage_output.shape[1])


def test_smram_figure_ccmp_and_ldiv(cra):
    fig = figures.smram_figure(cra, index=1)
    panels = _image_axes(fig)
    maps = cra.smram_maps[1].numpy()
    assert len(panels) == 4
    for ax, m in zip(panels, maps):
        np.testing.assert_allclose(ax.images[0].get_array(), m)
    ccmp = np.max(maps, axis=0)
    np.testing.assert_allclose(panels[3].images[0].get_array(), ccmp)
    h = float(ccmp.sum())
    assert panels[3].get_title().endswith(f"h = {h:.3f}")
    assert fig._suptitle.get_text().endswith(f"{1 - h / 3:.4f}")


# ------------------------------------------------------------------------------------------------ plotly
def test_topk_bar_groups_heads_and_combined(cra):
    fig = plots.topk_bar(cra.head_probs, NAMES, k=3, index=1, combined=cra.probs)
    combined = cra.probs[1]
    classes = sorted(range(4), key=lambda c: -float(combined[c]))[:3]
    assert [bar.name for bar in fig.data] == ["stage3", "stage4", "stage5", "concat", "combined"]
    for bar in fig.data:
        source = combined if bar.name == "combined" else cra.head_probs[bar.name][1]
        assert list(bar.x) == [NAMES[c] for c in classes]
        np.testing.assert_allclose(bar.y, source[classes].numpy(), rtol=1e-6)
    assert fig.layout.barmode == "group"
    # Without a combined vector, classes are ranked by the mean of the heads.
    only = plots.topk_bar({"a": torch.tensor([0.1, 0.2, 0.7]), "b": torch.tensor([0.6, 0.3, 0.1])}, None, k=2)
    assert list(only.data[0].x) == ["class 2", "class 0"]


def test_channel_bars_data_sorted_and_marked(cra):
    st = cra.stage(5)
    fig = plots.channel_bars(
        st.importance, st.importance_softmax, st.suppression, st.suppressed_channels, sort=True, delta=cra.delta
    )
    importance = st.importance[0]
    order = sorted(range(importance.numel()), key=lambda c: -float(importance[c]))
    for bar, values in zip(fig.data, (importance, st.importance_softmax[0], st.suppression[0])):
        assert list(bar.x) == [f"c{c}" for c in order]
        np.testing.assert_allclose(bar.y, values[order].numpy(), rtol=1e-6)
        assert [color == plots.SUPPRESSED_COLOR for color in bar.marker.color] == st.suppressed_channels[
            0, order
        ].tolist()
    assert fig.layout.shapes[0].y0 == pytest.approx(cra.delta * float(st.importance_softmax[0].max()))
    plain = plots.channel_bars(st.importance)
    assert len(plain.data) == 1 and list(plain.data[0].x)[:3] == ["c0", "c1", "c2"]


def test_channel_bars_layout_is_make_subplots_layout(cra):
    """The dict-built panels sit where make_subplots(rows=n, shared_xaxes=True) puts them (a direct re-computation)."""
    from plotly.subplots import make_subplots

    st = cra.stage(3)
    for args in ((st.importance,), (st.importance, st.importance_softmax), (st.importance, st.importance_softmax,
                                                                             st.suppression)):  # fmt: skip
        fig = plots.channel_bars(*args)
        names = ["I", "I*", "S"][: len(args)]
        ref = make_subplots(rows=len(args), cols=1, shared_xaxes=True, subplot_titles=names)
        for row in range(1, len(args) + 1):
            suffix = "" if row == 1 else str(row)
            assert fig.layout[f"yaxis{suffix}"].domain == pytest.approx(ref.layout[f"yaxis{suffix}"].domain)
            assert fig.layout[f"xaxis{suffix}"].matches == ref.layout[f"xaxis{suffix}"].matches
            assert fig.data[row - 1].yaxis == f"y{suffix}"
        assert [a.text for a in fig.layout.annotations] == [a.text for a in ref.layout.annotations]
        assert [a.y for a in fig.layout.annotations] == pytest.approx([a.y for a in ref.layout.annotations])


def test_channel_bars_omega_draws_s_as_dots_on_a_fixed_axis(cra):
    st = cra.stage(3)
    fig = plots.channel_bars(
        st.importance, st.importance_softmax, st.suppression, st.suppressed_channels, delta=cra.delta, omega=0.0
    )
    dots = [t for t in fig.data if t.type == "scatter"]
    assert len(dots) == 1 and dots[0].yaxis == "y3"
    np.testing.assert_allclose(dots[0].y, st.suppression[0].numpy(), rtol=1e-6)
    assert tuple(fig.layout.yaxis3.range) == (-0.05, 1.05)
    assert "zeroed" in fig.layout.annotations[2].text
    assert "zeroed" not in plots.channel_bars(st.importance, None, st.suppression, omega=0.5).layout.annotations[1].text
    assert not [t for t in plots.channel_bars(st.importance, st.importance_softmax).data if t.type == "scatter"]


def test_heatmap_and_sweep_plot_carry_the_data():
    m = torch.rand(3, 5)
    fig = plots.heatmap(m, "map")
    np.testing.assert_allclose(np.array(fig.data[0].z), m.numpy(), rtol=1e-6)
    assert fig.layout.yaxis.autorange == "reversed"
    fig = plots.sweep_plot([0.5, 0.7, 0.9], {"top1": [0.6, 0.8, 0.7], "pointing": [0.2, 0.1, 0.3]}, "δ")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    stars = [t for t in fig.data if t.mode == "markers"]
    assert [t.name for t in lines] == ["top1", "pointing"] and list(lines[0].y) == [0.6, 0.8, 0.7]
    assert (stars[0].x[0], stars[1].x[0]) == (0.7, 0.9)
    assert fig.layout.xaxis.title.text == "δ"
    with pytest.raises(ConfigError):
        plots.sweep_plot([0.5, 0.9], {"top1": [0.1]}, "δ")


def test_training_curves_read_a_hand_written_metrics_csv(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(
        "time,epoch,step,split,name,value\n"
        "1.0,0,10,train,loss,2.5\n"
        "1.0,0,10,train,acc,0.25\n"
        "1.0,0,10,train,lr,0.01\n"
        "2.0,0,20,train,loss,2.0\n"
        "2.5,1,20,test,combined_top1,0.4\n"
        "3.0,0,20,train,loss,1.9\n"  # a resumed run logged step 20 again: the later row wins
        "3.5,1,30,train,loss,1.5\n"
    )
    fig = plots.training_curves(read_metrics_csv(csv_path))
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"train/loss", "train/acc", "test/combined_top1"}  # lr is not a curve
    assert list(by_name["train/loss"].x) == [10, 20, 30] and list(by_name["train/loss"].y) == [2.5, 1.9, 1.5]
    assert list(by_name["test/combined_top1"].y) == [0.4]
    assert by_name["train/loss"].yaxis == "y" and by_name["train/acc"].yaxis == "y2"
    only_lr = plots.training_curves(read_metrics_csv(csv_path), names=["lr"])
    assert [t.name for t in only_lr.data] == ["train/lr"] and list(only_lr.data[0].y) == [0.01]
    with pytest.raises(ConfigError, match="not found"):
        read_metrics_csv(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="columns"):
        read_metrics_csv(tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="no metrics to plot"):
        plots.training_curves(read_metrics_csv(csv_path), names=["no_such_metric"])
