"""Small layout helpers shared by the pages: images and figures with PNG downloads, plotly charts, captions.

Downloads are generated on click (``st.download_button`` with a callable), so a page with many figures renders
no PNG it is not asked for. Plotly charts are downloadable as PNG from their own toolbar (camera icon); the
static matplotlib figures of :mod:`fgvc_core.explain.rendering.figures` are offered beside the views they export.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import streamlit as st
from matplotlib.figure import Figure

from fgvc_core.app.models import LoadedModel, metric_summary
from fgvc_core.app.settings import MODEL_TITLES, display_path
from fgvc_core.data.transforms import describe_preprocess, kept_fraction
from fgvc_core.explain.rendering.figure_utils import format_prob
from fgvc_core.explain.rendering.overlay import array_to_png_bytes, figure_to_png_bytes


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "figure"


def download_png(label: str, make_png: Callable[[], bytes], file_name: str, key: str) -> None:
    """A small PNG download button whose bytes are made only when it is clicked."""
    st.download_button(
        label, data=make_png, file_name=f"{slug(file_name)}.png", mime="image/png", key=key, icon=":material/download:"
    )


def image_with_download(image: Any, caption: str, file_name: str, key: str) -> None:
    """Show an image (PIL or uint8 array) with its caption and a PNG download."""
    st.image(image, caption=caption, width="stretch")
    download_png("PNG", lambda: array_to_png_bytes(np.asarray(image)), file_name, key)


def figure_download(label: str, build: Callable[[], Figure], file_name: str, key: str) -> None:
    """A download button for a static matplotlib figure, built and rendered only on click."""
    download_png(label, lambda: figure_to_png_bytes(build(), dpi=120), file_name, key)


def figure_image(build: Callable[[], Figure], caption: str | None = None) -> bytes:
    """Render a matplotlib figure once to PNG, show it, and return the bytes (for a download of the same)."""
    png = figure_to_png_bytes(build(), dpi=110)
    st.image(png, caption=caption, width="stretch")
    return png


def plotly(fig: Any, file_name: str, key: str | None = None) -> None:
    """A plotly chart whose toolbar downloads it as PNG under a meaningful name."""
    config = {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": slug(file_name), "scale": 2},
    }
    st.plotly_chart(fig, config=config, key=key)


def timing_caption(parts: Sequence[str]) -> None:
    """The measured timings of a panel, in one small caption."""
    st.caption(" · ".join(parts))


def top_classes(probs: Any, classes: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable ``(class, probability)`` of a ``(K,)`` or ``(1, K)`` vector, best first."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    order = np.argsort(-p, kind="stable")[:k]
    return [(classes[int(c)], float(p[c])) for c in order]


def prediction_line(probs: Any, classes: Sequence[str]) -> str:
    """``"Red_Barred_Forked 87.1%"``: the top-1 class and its probability."""
    name, p = top_classes(probs, classes, 1)[0]
    return f"{name} {format_prob(p)}"


def headline(label: str, probs: Any, classes: Sequence[str]) -> None:
    """A prediction in large type that wraps (``st.metric`` cuts long class names): label, then class and %."""
    st.markdown(f":gray[{label}]\n\n#### {prediction_line(probs, classes)}")


def input_text(loaded: LoadedModel, image: Any) -> str:
    """How this checkpoint turns ``image`` into its input (its sidecar's preprocess) and how much of it is kept."""
    pp = loaded.preprocess
    width, height = image.image.size
    kept = kept_fraction((width, height), pp)
    return (
        f"Input of this {MODEL_TITLES.get(loaded.kind, loaded.kind)} checkpoint: {describe_preprocess(pp)}. "
        f"The network sees {kept:.0%} of this {width}×{height} px image."
    )


def input_note(loaded: LoadedModel, image: Any) -> None:
    """:func:`input_text` as a caption."""
    st.caption(input_text(loaded, image))


def model_facts(loaded: LoadedModel) -> None:
    """What a checkpoint is: architecture options, data, training progress and accuracy from its sidecar."""
    meta = loaded.meta
    config = dict(meta["model"]["config"])
    st.markdown(f"**{MODEL_TITLES.get(loaded.kind, loaded.kind)}** · `{display_path(loaded.path)}`")
    accuracy = metric_summary(meta)
    if "combined" in accuracy:
        st.metric("combined top-1", format_prob(accuracy["combined"]), help="test accuracy from the sidecar")
    elif not accuracy:
        st.caption("No accuracy in the sidecar yet (the checkpoint was saved before its first evaluation).")
    facts: dict[str, Any] = {f"{head} top-1": format_prob(v) for head, v in accuracy.items() if head != "combined"}
    facts |= {
        "classes": len(loaded.classes),
        "input": f"{loaded.preprocess.get('img_size')} px ({loaded.preprocess.get('preset', '?')} preset)",
        "resize / crop": describe_preprocess(loaded.preprocess),
        "trained on": trained_on(meta),
        "class names": class_list(loaded.classes),
        "trained steps": meta.get("step", "?"),
        "epochs": meta.get("epoch", "?"),
        "code": meta.get("code_version", "?"),
    }
    st.dataframe(_rows(facts), hide_index=True, width="stretch")
    with st.expander("Model configuration (from the sidecar)"):
        st.json(config)


def trained_on(meta: Mapping[str, Any]) -> str:
    """``"cub · data/CUB_200_2011 (train split; tested on test)"`` from the sidecar's dataset record."""
    data = meta.get("dataset") or {}
    name = data.get("name", "?")
    root = data.get("root")
    where = f" · {display_path(root)}" if isinstance(root, str) and root else ""
    splits = f" ({data.get('train_split', '?')} split; tested on {data.get('test_split', '?')})"
    return f"{name}{where}{splits}"


def class_list(classes: Sequence[str], limit: int = 12) -> str:
    """The first ``limit`` class names, and how many more there are."""
    shown = ", ".join(classes[:limit])
    return shown + (f" … and {len(classes) - limit} more" if len(classes) > limit else "")


def _rows(values: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"fact": key, "value": str(value)} for key, value in values.items()]
