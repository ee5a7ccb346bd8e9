"""Explanations, split by concern: ``attribution`` (per-stage CAMs, ViT Grad-CAM), ``scoring`` (metrics,
perturbation, occlusion, evaluation, readouts) and ``rendering`` (overlays, matplotlib figures, plotly plots).

The public names below are served from one table (name -> defining module) and imported on first use, so that
``import fgvc_core.explain`` (or ``from fgvc_core.explain.rendering import plots``) does not import
pytorch-grad-cam, scikit-learn, timm or OpenCV until a function that needs them is used. Rollout is pure tensor
maths in :mod:`fgvc_core.ops.rollout` (below the models); it is re-exported here because users look for it here.
"""

from __future__ import annotations

from fgvc_core._lazy import lazy_exports

_ATTRIBUTION = "fgvc_core.explain.attribution"
_SCORING = "fgvc_core.explain.scoring"
_RENDERING = "fgvc_core.explain.rendering"

# public name -> the module that defines it (the one table; __all__ is its keys)
_EXPORTS = {
    "attention_rollout": "fgvc_core.ops.rollout",
    "fuse_heads": "fgvc_core.ops.rollout",
    "fuse_layers": "fgvc_core.ops.rollout",
    "fused_rollout": "fgvc_core.ops.rollout",
    "gradient_rollout": "fgvc_core.ops.rollout",
    "StageCamModel": f"{_ATTRIBUTION}.cam",
    "stage_cams": f"{_ATTRIBUTION}.cam",
    "rams_trans_cam": f"{_ATTRIBUTION}.vit_cam",
    "tokens_to_grid": f"{_ATTRIBUTION}.vit_cam",
    "center_point_baseline": f"{_SCORING}.metrics",
    "crop_area_fraction": f"{_SCORING}.metrics",
    "crop_recall": f"{_SCORING}.metrics",
    "format_summary": f"{_SCORING}.metrics",
    "gaussian_energy_baseline": f"{_SCORING}.metrics",
    "part_boxes_to_input": f"{_SCORING}.metrics",
    "part_energy": f"{_SCORING}.metrics",
    "pointing_game": f"{_SCORING}.metrics",
    "random_point_baseline": f"{_SCORING}.metrics",
    "score_maps": f"{_SCORING}.metrics",
    "summarize": f"{_SCORING}.metrics",
    "summarize_scores": f"{_SCORING}.metrics",
    "uniform_energy_baseline": f"{_SCORING}.metrics",
    "deletion_insertion_auc": f"{_SCORING}.perturbation",
    "road_scores": f"{_SCORING}.perturbation",
    "background_patches": f"{_SCORING}.occlusion",
    "occlude_boxes": f"{_SCORING}.occlusion",
    "colorize": f"{_RENDERING}.overlay",
    "draw_boxes": f"{_RENDERING}.overlay",
    "export_figure": f"{_RENDERING}.overlay",
    "figure_to_png_bytes": f"{_RENDERING}.overlay",
    "normalize_map": f"{_RENDERING}.overlay",
    "overlay_heatmap": f"{_RENDERING}.overlay",
    "resize_map": f"{_RENDERING}.overlay",
    "to_rgb_uint8": f"{_RENDERING}.overlay",
    "attention_layers_figure": f"{_RENDERING}.figures",
    "dppm_figure": f"{_RENDERING}.figures",
    "prediction_figure": f"{_RENDERING}.figures",
    "rollout_figure": f"{_RENDERING}.figures",
    "stage_cam_figure": f"{_RENDERING}.figures",
    "channel_maps_figure": f"{_RENDERING}.figure_cra",
    "cram_channels_figure": f"{_RENDERING}.figure_cra",
    "smram_figure": f"{_RENDERING}.figure_cra",
    "channel_bars": f"{_RENDERING}.plots",
    "heatmap": f"{_RENDERING}.plots",
    "sweep_plot": f"{_RENDERING}.plots",
    "topk_bar": f"{_RENDERING}.plots",
    "training_curves": f"{_RENDERING}.plots",
}

__all__ = [*_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
