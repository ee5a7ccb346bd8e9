"""Explanations: attention rollout, per-stage CAMs (pytorch-grad-cam), overlays and explanation metrics.

The public functions are listed in ``_EXPORTS`` with the submodule that defines each, and imported on first use,
so that ``import fgvc_core.explain`` (or ``from fgvc_core.explain.rendering import plots``) does not import
pytorch-grad-cam, scikit-learn, timm or OpenCV until a function that needs them is used.
"""

from __future__ import annotations

from fgvc_core._lazy import lazy_exports

_MODULES = {
    "attribution.cam": ("StageCamModel", "stage_cams"),
    "attribution.vit_cam": ("rams_trans_cam", "tokens_to_grid"),
    "rendering.overlay": (
        "colorize",
        "draw_boxes",
        "export_figure",
        "figure_to_png_bytes",
        "normalize_map",
        "overlay_heatmap",
        "resize_map",
        "to_rgb_uint8",
    ),
    "scoring.metrics": (
        "center_point_baseline",
        "crop_area_fraction",
        "crop_recall",
        "format_summary",
        "gaussian_energy_baseline",
        "part_boxes_to_input",
        "part_energy",
        "pointing_game",
        "random_point_baseline",
        "score_maps",
        "summarize",
        "summarize_scores",
        "uniform_energy_baseline",
    ),
    "scoring.perturbation": ("deletion_insertion_auc", "road_scores"),
    "scoring.occlusion": ("background_patches", "occlude_boxes"),
    "rendering.figures": (
        "attention_layers_figure",
        "dppm_figure",
        "prediction_figure",
        "rollout_figure",
        "stage_cam_figure",
    ),
    "rendering.figure_cra": ("channel_maps_figure", "cram_channels_figure", "smram_figure"),
    "rendering.plots": ("channel_bars", "heatmap", "sweep_plot", "topk_bar", "training_curves"),
}
_EXPORTS = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}
_EXPORTS.update(
    dict.fromkeys(
        ("attention_rollout", "fuse_heads", "fuse_layers", "fused_rollout", "gradient_rollout"), "fgvc_core.ops.rollout"
    )
)

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
