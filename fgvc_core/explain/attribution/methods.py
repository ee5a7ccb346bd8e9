"""The one table of CAM methods: pytorch-grad-cam class, label, cost, and which model kinds each works for.

Every list of CAM methods in the code (the CRA-SMRA per-stage CAMs, the ViT CAM, the app's select boxes and
captions, the explain CLI) is read from :data:`CAM_TABLE`, so a method added here has a label on every page and
is accepted wherever its kind is.

Kinds:
- ``"cnn"``: CRA-SMRA's per-stage taps (:func:`fgvc_core.explain.attribution.cam.stage_cams`);
- ``"vit"``: a ViT block's tokens reshaped to the patch grid
  (:func:`fgvc_core.explain.attribution.vit_cam.rams_trans_cam`).

Left out on purpose: FullGrad (hooks every conv/BN of the model itself), AblationCAM (swaps layers inside the
model), ShapleyCAM (needs the library's own second-order backward). The library is imported only by
:func:`cam_class`, so reading labels (a page, ``--help``) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from fgvc_core.errors import ConfigError

CNN, VIT = "cnn", "vit"


@dataclass(frozen=True)
class CamMethod:
    """One CAM method.

    Attributes:
        name: the option value (``--cam-method``, the pages' select boxes).
        library_class: the class's name in ``pytorch_grad_cam``.
        label: how a page or a figure title names it.
        note: what a reader should know before choosing it (shown in brackets beside the label), or ``""``.
        cost: what one map runs beyond one forward (and one backward) pass, in words; ``""`` if nothing.
        kinds: the model kinds (``"cnn"``, ``"vit"``) it is offered for.
    """

    name: str
    library_class: str
    label: str
    kinds: frozenset[str]
    note: str = ""
    cost: str = ""

    @property
    def long_label(self) -> str:
        """The label with its note, for a select box."""
        return f"{self.label} ({self.note})" if self.note else self.label


_BOTH, _CNN = frozenset({CNN, VIT}), frozenset({CNN})

CAM_TABLE: dict[str, CamMethod] = {
    m.name: m
    for m in (
        CamMethod("gradcam", "GradCAM", "Grad-CAM", _BOTH),
        CamMethod("gradcam++", "GradCAMPlusPlus", "Grad-CAM++", _BOTH),
        CamMethod("xgradcam", "XGradCAM", "XGrad-CAM", _BOTH),
        CamMethod("layercam", "LayerCAM", "LayerCAM", _BOTH),
        CamMethod("hirescam", "HiResCAM", "HiResCAM", _BOTH),
        CamMethod("gradcam_elementwise", "GradCAMElementWise", "Grad-CAM element-wise", _CNN),
        CamMethod("eigencam", "EigenCAM", "Eigen-CAM", _BOTH),
        CamMethod("eigengradcam", "EigenGradCAM", "EigenGrad-CAM", _CNN),
        CamMethod("kpcacam", "KPCA_CAM", "KPCA-CAM", _CNN),
        CamMethod("fem", "FEM", "FEM", _CNN),
        CamMethod("finercam", "FinerCAM", "FinerCAM", _CNN, note="fine-grained: target vs its closest classes"),
        CamMethod(
            "scorecam",
            "ScoreCAM",
            "Score-CAM",
            _CNN,
            note="slow: one forward per channel",
            cost="one forward pass per channel of each stage layer",
        ),
    )
}

# name -> the label with its note (the pages' select boxes); ``CAM_LABELS[m].split(" (")[0]`` is the short label.
CAM_LABELS: dict[str, str] = {name: m.long_label for name, m in CAM_TABLE.items()}


def methods_for(kind: str) -> tuple[str, ...]:
    """The method names offered for a model kind (``"cnn"`` or ``"vit"``), in table order."""
    if kind not in (CNN, VIT):
        raise ConfigError(f"CAM kind must be {CNN!r} or {VIT!r}, got {kind!r}")
    return tuple(name for name, m in CAM_TABLE.items() if kind in m.kinds)


def cam_class(name: str) -> type:
    """The pytorch-grad-cam class of ``name`` (imports the library); an unknown name raises ConfigError."""
    method = CAM_TABLE.get(name)
    if method is None:
        raise ConfigError(f"unknown CAM method {name!r}; choose one of {', '.join(CAM_TABLE)}")
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, method.library_class)
