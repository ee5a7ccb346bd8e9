"""The per-stage CAM row shared by the Grad-CAM page and the γ view of the Tune page (paper Figs. 4-6)."""

from __future__ import annotations

import streamlit as st

from fgvc_core.app import traces
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.map_panels import map_panel
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.session import Timed
from fgvc_core.app.views import figure_download, image_with_download, slug
from fgvc_core.explain.attribution.methods import CAM_LABELS
from fgvc_core.explain.rendering.figure_utils import display_image
from fgvc_core.explain.rendering.figures import stage_cam_figure


def stage_cam_row(
    loaded: LoadedModel,
    image: ImageChoice,
    target: int,
    method: str,
    delta: float | None,
    opacity: float,
    key: str,
    parts: bool = False,
    probability: float | None = None,
    normalise: str = "per_map",
) -> Timed:
    """The network input and the stage 3/4/5 CAM overlays side by side, with each map's peak and a PNG download.

    With ``parts`` and an image that has deciding part boxes, each panel draws them and says whether its peak
    hits one (``fgvc_core.explain.scoring.metrics.pointing_game``, tolerance 0). ``probability`` is the target class's
    (printed beside every map, flagged when near 0 %). ``normalise="shared"`` draws the stages on one colour scale,
    the raw maps over their common max (``fgvc_core.explain.attribution.cam.stage_cams``), so a weak stage looks weak.

    Returns the timed CAM result (its ``value`` is ``{stage: (H, W) map}``).
    """
    result = traces.stage_cams(loaded, image, target, method, delta=delta, normalise=normalise)
    cams = result.value
    rgb = display_image(loaded.input_tensor(image.image)[0], loaded.preprocess)
    columns = st.columns(len(cams) + 1)
    with columns[0]:
        st.image(rgb, caption=f"input ({rgb.shape[1]}×{rgb.shape[0]} px)", width="stretch")
    name = loaded.classes[target]
    for column, (stage, m) in zip(columns[1:], cams.items()):
        with column:
            shown, caption = map_panel(
                rgb,
                m,
                f"stage {stage}",
                image,
                loaded.preprocess,
                show_parts=parts,
                opacity=opacity,
                probability=probability,
                class_name=name,
                scale=(0.0, 1.0) if normalise == "shared" else None,
            )
            image_with_download(shown, caption, f"{method}_stage{stage}_{image.name}", f"{key}_dl_stage{stage}")
    title = f"{CAM_LABELS.get(method, method).split(' (')[0]} · class {loaded.classes[target]}"
    figure_download(
        "Stages side by side (PNG)",
        lambda: stage_cam_figure(rgb, cams, titles={s: f"stage {s}" for s in cams}, alpha=opacity),
        f"{method}_stages_{slug(image.name)}_{slug(title)}",
        key=f"{key}_dl_row",
    )
    return result
