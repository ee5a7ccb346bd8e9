"""The model registry: one :class:`ModelSpec` per model, the one place code asks what a model is and offers.

Like timm's ``@register_model``, but without import-time side effects: every callable a spec names (builder, trace
type, CAM function, evaluation maps, export views) is a ``"module:attribute"`` string imported on first use, so
importing the registry (and so ``fgvc_core.models``, the CLIs and ``--help``) never imports torch or timm, and
building a CRA-SMRA model never imports timm's ViT code.

Code that differs per model reads the spec (``get_spec(model.model_name).cam_methods``) or loops over
``list_specs()``; it never compares a model's name with a literal. Adding a model = its package, one
``register(ModelSpec(...))`` below, its recipe and its tests (``docs/ARCHITECTURE.md``, "adding a model").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fgvc_core.errors import ConfigError
from fgvc_core.models import limits

if TYPE_CHECKING:  # pragma: no cover - types only: importing torch here would slow every CLI's --help
    import torch.nn as nn

APP_PAGES = ("overview", "rollout", "dppm", "gradcam", "cram", "tune", "compare", "evaluation")
"""The explorer's model pages (``pages/<name>.py``); a spec's ``pages`` is a subset."""


def resolve(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"a registry target must read 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module_name), attr)


@dataclass(frozen=True)
class ComparePlan:
    """What the Compare variants page offers for one model and what it starts with.

    Attributes:
        grids: ablation grids (``train/configs/ablation/<grid>.yaml``) whose median-seed runs are offered first.
        default_grid: the grid whose ``default_variants`` the page starts with (None: no grid default).
        default_variants: those variants, in display order.
        fallback: what the page starts with when that grid has none: ``"sweep"`` (the γ-sweep checkpoints) or
            ``"all"`` (every checkpoint offered).
        limit: how many checkpoints the page shows side by side at most.
    """

    grids: tuple[str, ...] = ()
    default_grid: str | None = None
    default_variants: tuple[str, ...] = ()
    fallback: str = "all"
    limit: int = 2


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine, the CLIs and the app need to know about one model, in one frozen record.

    Attributes:
        name: the registry name: ``build_model(name, ...)``, ``model.model_name`` and a sidecar's ``model.name``.
        title: how people name it (``"RAMS-Trans"``).
        builder: ``"module:function"`` building the ``nn.Module`` from ``num_classes`` and keyword options.
        trace_type: ``"module:Class"`` of what ``model.trace`` returns (a :class:`fgvc_core.models.base.Trace`).
        default_map: the name of the map ``trace.default_map()`` returns (shown on figures and in reports).
        transform_preset: the key of ``fgvc_core.data.transforms.PRESETS`` its paper's preprocessing is.
        checkpoint_options: the builder keywords a checkpoint sidecar may set (``fgvc_core.models.limits``: a
            sidecar is untrusted input, so anything else is refused; never ``pretrained``).
        size_caps: ``(option path, lowest, highest)`` for every size a sidecar sets (dotted paths into dicts).
        demo_file: the demo checkpoint's file name in ``checkpoints/`` (None: no demo).
        trace_options: the override keywords of ``model.trace`` besides ``x`` and ``cache`` (``threshold``,
            ``delta``...); the explain CLI notes options the model ignores.
        trace_context: extra keywords ``model.trace`` accepts about the uploaded image: ``original_size``
            (its ``(W, H)``) and ``preprocess`` (the checkpoint's dict); the app passes only these.
        cam_methods: the CAM method names ``cam_function`` accepts (keys of the CAM table).
        cam_function: ``"module:function"`` computing the model's CAMs (None: the model has none).
        evaluation_maps: ``"module:function"`` ``(model, x) -> (maps (B, h, w), crop boxes (B, 4) or None, name)``
            that explanation scoring uses; None: every image's ``trace.default_map()``.
        export_views: ``"module:function"`` ``(model, meta, x, image, options) -> (views, probs)`` giving
            ``train.explain``'s views; None: the generic views (prediction and the default map).
        pages: the app pages (:data:`APP_PAGES`) that can show it.
        compare: what the Compare variants page offers (None: the page leaves it out).
    """

    name: str
    title: str
    builder: str
    trace_type: str
    default_map: str
    transform_preset: str
    checkpoint_options: frozenset[str]
    size_caps: tuple[tuple[str, float, float], ...] = ()
    demo_file: str | None = None
    trace_options: tuple[str, ...] = ()
    trace_context: tuple[str, ...] = ()
    cam_methods: tuple[str, ...] = ()
    cam_function: str | None = None
    evaluation_maps: str | None = None
    export_views: str | None = None
    pages: tuple[str, ...] = ("overview", "evaluation")
    compare: ComparePlan | None = None

    def __post_init__(self) -> None:
        unknown = set(self.pages) - set(APP_PAGES)
        if unknown:
            raise ConfigError(f"model {self.name!r}: unknown app page(s) {sorted(unknown)}; pages are {APP_PAGES}")
        if set(self.trace_context) - {"original_size", "preprocess"}:
            raise ConfigError(f"model {self.name!r}: trace_context may hold only original_size and preprocess")

    def build(self) -> Callable[..., nn.Module]:
        """The builder function (imported now)."""
        return resolve(self.builder)

    def trace_class(self) -> type:
        """The class of ``model.trace``'s result (imported now)."""
        return resolve(self.trace_type)

    def cam(self) -> Callable[..., Any]:
        """The CAM function (imported now); ConfigError for a model without CAMs."""
        if self.cam_function is None:
            raise ConfigError(f"{self.title} has no CAM function")
        return resolve(self.cam_function)

    def supports(self, page: str) -> bool:
        """Whether the app page ``page`` can show this model."""
        return page in self.pages


_SPECS: dict[str, ModelSpec] = {}  # in registration order: the order the app shows models in
_BUILDERS: dict[str, str] = {}  # name -> builder target; build_model's table (tests register tiny models here)


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` (its name must be new); its checkpoint whitelist and caps go to ``fgvc_core.models.limits``."""
    if spec.name in _SPECS:
        raise ConfigError(f"model {spec.name!r} is registered already")
    _SPECS[spec.name] = spec
    _BUILDERS[spec.name] = spec.builder
    limits.CHECKPOINT_OPTIONS[spec.name] = spec.checkpoint_options
    limits.SIZE_CAPS[spec.name] = spec.size_caps
    return spec


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_BUILDERS)


def list_specs() -> list[ModelSpec]:
    """Every registered spec, in registration order (the order the app lays models out in)."""
    return list(_SPECS.values())


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name``.

    Raises:
        ConfigError: no such model (the message lists the registered ones).
    """
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None


def _resolve(name: str) -> Callable[..., nn.Module]:
    try:
        target = _BUILDERS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None
    return resolve(target)


def build_model(name: str, num_classes: int, **options: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name of :func:`list_models` (``"rams_trans"``, ``"cra_smra"``...).
        num_classes: number of output classes (>= 2).
        **options: model hyperparameters (see docs/methods/ and each builder's docstring); unknown options raise
            :class:`~fgvc_core.errors.ConfigError`.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return _resolve(name)(num_classes=num_classes, **options)


# ------------------------------------------------------------------------------------------------ the models
_RAMS = "fgvc_core.models.rams_trans"
_CRA = "fgvc_core.models.cra_smra"
_ATTRIBUTION = "fgvc_core.explain.attribution"
_SCORING = "fgvc_core.explain.scoring.evaluation"
# The builders' keyword arguments minus pretrained (tests/test_hostile_checkpoint.py keeps them in sync).
_RAMS_OPTIONS = frozenset({
    "backbone", "img_size", "patch_size", "num_scales", "scale_loss_weights", "threshold", "head_fusion",
    "discard_ratio", "rollout_query", "start_layer", "drop_rate", "vit_kwargs", "patch_embed",
})  # fmt: skip
_CRA_OPTIONS = frozenset({
    "backbone", "variant", "delta", "omega", "reduction", "conv_channels", "conv_mid_channels", "head_hidden",
    "alpha", "beta", "gamma", "smram_resize", "suppress_from",
})  # fmt: skip
# What a sidecar of any timm-ViT model may size, and the CAM methods of the ViT rows of the CAM table.
_VIT_SIZE_CAPS = (
    ("img_size", 1, limits.MAX_IMG_SIZE),
    ("patch_size", 1, limits.MAX_IMG_SIZE),
    ("vit_kwargs.embed_dim", 1, limits.MAX_WIDTH),
    ("vit_kwargs.depth", 1, limits.MAX_DEPTH),
    ("vit_kwargs.num_heads", 1, limits.MAX_HEADS),
    ("vit_kwargs.mlp_ratio", 0, limits.MAX_MLP_RATIO),
)
_VIT_CAMS = ("gradcam", "gradcam++", "hirescam", "layercam", "xgradcam", "eigencam")
_CRA_CAMS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "gradcam_elementwise", "eigencam",
             "eigengradcam", "kpcacam", "fem", "finercam", "scorecam")  # fmt: skip

register(
    ModelSpec(
        name="rams_trans",
        title="RAMS-Trans",
        builder=f"{_RAMS}.model:build_rams_trans",
        trace_type=f"{_RAMS}.trace:RamsTransTrace",
        default_map="attention rollout (scale 1)",
        transform_preset="rams_trans",
        checkpoint_options=_RAMS_OPTIONS,
        size_caps=_VIT_SIZE_CAPS,
        demo_file="rams_trans_demo.safetensors",
        trace_options=("threshold", "head_fusion", "rollout_query", "discard_ratio", "start_layer"),
        trace_context=("original_size", "preprocess"),
        cam_methods=_VIT_CAMS,
        cam_function=f"{_ATTRIBUTION}.vit_cam:rams_trans_cam",
        evaluation_maps=f"{_SCORING}:rollout_maps",
        export_views="train.explain_views:rams_trans_views",
        pages=("overview", "rollout", "dppm", "gradcam", "compare", "evaluation"),
        compare=ComparePlan(("rams",), "rams", ("one_scale", "two_scales"), fallback="all", limit=2),
    )
)

register(
    ModelSpec(
        name="cra_smra",
        title="CRA-SMRA",
        builder=f"{_CRA}.model:build_cra_smra",
        trace_type=f"{_CRA}.trace:CraSmraTrace",
        default_map="enhanced map (stage 5)",
        transform_preset="cra_smra",
        checkpoint_options=_CRA_OPTIONS,
        size_caps=(
            ("reduction", 1, limits.MAX_WIDTH),
            ("conv_channels", 1, limits.MAX_WIDTH),
            ("conv_mid_channels", 1, limits.MAX_WIDTH),
            ("head_hidden", 1, limits.MAX_WIDTH),
        ),
        demo_file="cra_smra_demo.safetensors",
        trace_options=("delta", "omega"),
        cam_methods=_CRA_CAMS,
        cam_function=f"{_ATTRIBUTION}.cam:stage_cams",
        evaluation_maps=f"{_SCORING}:stage5_gradcam_maps",
        export_views="train.explain_views:cra_smra_views",
        pages=("overview", "cram", "gradcam", "tune", "compare", "evaluation"),
        compare=ComparePlan(
            ("cra_table3", "cra_gamma", "cra_delta"), "cra_table3", ("base", "cram", "cram_smram"), "sweep", 3
        ),
    )
)

_VIT = "fgvc_core.models.vit_classifier"
_VIT_OPTIONS = frozenset({
    "backbone", "img_size", "patch_size", "head_fusion", "rollout_query", "discard_ratio", "start_layer",
    "drop_rate", "vit_kwargs", "patch_embed",
})  # fmt: skip

register(
    ModelSpec(
        name="vit_classifier",
        title="ViT classifier",
        builder=f"{_VIT}.model:build_vit_classifier",
        trace_type=f"{_VIT}.trace:VitTrace",
        default_map="attention rollout",
        transform_preset="rams_trans",  # the ViT papers' preprocessing (square resize, centre crop at test)
        checkpoint_options=_VIT_OPTIONS,
        size_caps=_VIT_SIZE_CAPS,
        trace_options=("head_fusion", "rollout_query", "discard_ratio", "start_layer"),
        cam_methods=_VIT_CAMS,
        cam_function=f"{_ATTRIBUTION}.vit_cam:rams_trans_cam",  # any model with .vit, .cls_token(0), .head_names
        pages=("overview", "evaluation"),
    )
)
