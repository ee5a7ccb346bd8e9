"""The per-stage CAM row shared by the Grad-CAM page and the γ view of the Tune page (paper Figs. 4-6)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from fgvc_core.app import render, traces
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.session import Timed
from fgvc_core.app.views import figure_download, image_with_download, slug
from fgvc_core.explain import metrics
from fgvc_core.explain.figure_utils import display_image
from fgvc_core.explain.figures import stage_cam_figure
from fgvc_core.explain.overlay import draw_boxes, overlay_heatmap

PART_COLOR = (0, 255, 0)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def input_part_boxes(image: ImageChoice, preprocess: dict) -> np.ndarray | None:
    """The image's deciding part boxes on the network input (xywh), or None when it has none there."""
    if image.part_boxes is None or len(image.part_boxes) == 0:
        return None
    boxes = metrics.part_boxes_to_input(image.part_boxes, image.image.size, preprocess)
    keep = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)  # a part cut off by the crop
    return boxes[keep] if keep.any() else None


CAM_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "gradcam_elementwise": "Grad-CAM element-wise",
    "eigencam": "Eigen-CAM",
    "eigengradcam": "EigenGrad-CAM",
    "kpcacam": "KPCA-CAM",
    "fem": "FEM",
    "finercam": "FinerCAM (fine-grained: target vs its closest classes)",
    "scorecam": "Score-CAM (slow: one forward per channel)",
}


def stage_cam_row(
    loaded: LoadedModel,
    image: ImageChoice,
    target: int,
    method: str,
    delta: float | None,
    opacity: float,
    key: str,
    parts: bool = False,
) -> Timed:
    """The network input and the stage 3/4/5 CAM overlays side by side, with each map's peak and a PNG download.

    With ``parts`` and an image that has deciding part boxes, each panel draws them and says whether its peak
    hits one (``fgvc_core.explain.metrics.pointing_game``, tolerance 0).

    Returns the timed CAM result (its ``value`` is ``{stage: (H, W) map}``).
    """
    result = traces.stage_cams(loaded, image, target, method, delta=delta)
    cams = result.value
    rgb = display_image(loaded.input_tensor(image.image)[0], loaded.preprocess)
    columns = st.columns(len(cams) + 1)
    with columns[0]:
        st.image(rgb, caption=f"input ({rgb.shape[1]}×{rgb.shape[0]} px)", width="stretch")
    boxes = input_part_boxes(image, loaded.preprocess) if parts else None
    for column, (stage, m) in zip(columns[1:], cams.items()):
        with column:
            shown = overlay_heatmap(rgb, m, alpha=opacity)
            note = ""
            if boxes is not None:
                shown = draw_boxes(shown, xywh_to_xyxy(boxes), colors=[PART_COLOR] * len(boxes))
                hit = bool(metrics.pointing_game(np.asarray(m)[None], [boxes], image_size=rgb.shape[:2])[0])
                note = " · peak hits a deciding part" if hit else " · peak misses every deciding part"
            image_with_download(
                shown,
                f"stage {stage} · {render.peak_text(m)}{note}",
                f"{method}_stage{stage}_{image.name}",
                f"{key}_dl_stage{stage}",
            )
    title = f"{CAM_LABELS.get(method, method).split(' (')[0]} · class {loaded.classes[target]}"
    figure_download(
        "Stages side by side (PNG)",
        lambda: stage_cam_figure(rgb, cams, titles={s: f"stage {s}" for s in cams}, alpha=opacity),
        f"{method}_stages_{slug(image.name)}_{slug(title)}",
        key=f"{key}_dl_row",
    )
    return result
