"""Export every visualisation of a checkpoint's model for a set of images: PNG figures, HTML pages, an index.

    fgvc-explain --checkpoint checkpoints/cra_smra_demo.safetensors --images photos/ bird.jpg \\
        --out explain_out --format png html --cam-method gradcam --delta 0.7
    python -m train.explain ...        # the same, from a checkout

RAMS-Trans: DPPM per scale, attention rollout, per-layer attention, gradient rollout, ViT CAM.
CRA-SMRA: per-stage CAMs, CRAM channel bars, channel maps, SMRAM maps. Both: the prediction.

Layout: ``OUT/<image stem>/<view>.png`` and ``OUT/<image stem>/report.html`` (all interactive plots of that image),
``OUT/index.html`` linking everything, ``OUT/manifest.json`` (files and top-1 per image, skipped images and why).
HTML pages work offline: plotly.js is written once as ``OUT/plotly.min.js`` and referenced by every page
(``--plotlyjs shared``, default), or embedded in each page (``--plotlyjs inline``).

Every image goes through ``fgvc_core.load_image``; an unreadable one is reported and skipped, the others go on.
Exit status: 0 all images exported, 1 some skipped, 2 nothing could be done (bad checkpoint/option, no images).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import fgvc_core
from fgvc_core.errors import FGVCError
from train import cli_args

if TYPE_CHECKING:  # the views pull in matplotlib, plotly and torch: imported where used, so --help stays fast
    from train.explain_views import ExplainOptions, View

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PLOTLY_JS = "plotly.min.js"


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli_args.new_parser(__doc__)
    cli_args.add_model_args(parser)
    parser.add_argument("--images", nargs="+", required=True, help="image files and/or folders (searched recursively)")
    parser.add_argument("--out", required=True, type=cli_args.output_dir, help="output folder")
    parser.add_argument("--format", nargs="+", choices=("png", "html"), default=["png", "html"], dest="formats")
    parser.add_argument("--cam-method", default="gradcam", help="pytorch-grad-cam method (default gradcam)")
    parser.add_argument("--threshold", type=cli_args.finite_float, nargs="+",
                        help="RAMS-Trans DPPM α (one, or one per zoom)")  # fmt: skip
    parser.add_argument("--delta", type=cli_args.finite_float, help="CRA-SMRA δ override")
    parser.add_argument("--omega", type=cli_args.finite_float, help="CRA-SMRA ω override")
    parser.add_argument("--topk", type=cli_args.positive_int, default=5, help="classes in the prediction views")
    parser.add_argument("--dpi", type=cli_args.int_in(10, 1000), default=100, help="PNG resolution (10-1000)")
    parser.add_argument("--plotlyjs", choices=("shared", "inline"), default="shared",
                        help="plotly.js once in OUT/ (shared) or inside every HTML page (inline)")  # fmt: skip
    return parser


def collect_images(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files as given, folders searched recursively for image suffixes (sorted); missing paths are problems."""
    found, problems = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append((item, "no image files in this folder"))
            found += files
        elif path.is_file():
            found.append(path)
        else:
            problems.append((item, "no such file or folder"))
    return found, problems


def _folder_name(path: Path, taken: set[str]) -> str:
    """A safe, unique folder name for an image: its stem, with a counter when two images share one."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "image"
    name, n = stem, 2
    while name in taken:
        name, n = f"{stem}_{n}", n + 1
    taken.add(name)
    return name


def write_page(path: Path, title: str, views: list[View], plotlyjs: str, png_written: bool) -> None:
    """One HTML page with every view of one image: plotly figures where the view has them, else its static figure
    (the PNG beside the page, or embedded when no PNG was written). plotly.js is included once (inline or by path)."""
    from fgvc_core.explain.rendering.overlay import figure_to_png_bytes

    parts, first = [], True
    for view in views:
        parts.append(f"<h2>{html.escape(view.title)}</h2>")
        if view.plots:
            if view.figure is not None and png_written:
                parts.append(f'<p><a href="{quote(view.name)}.png">static figure (PNG)</a></p>')
            for fig in view.plots:
                include: Any = (True if plotlyjs == "inline" else f"../{PLOTLY_JS}") if first else False
                parts.append(fig.to_html(full_html=False, include_plotlyjs=include))
                first = False
        elif view.figure is not None:
            src = f"{quote(view.name)}.png"
            if not png_written:
                src = "data:image/png;base64," + base64.b64encode(figure_to_png_bytes(view.figure)).decode("ascii")
            parts.append(f'<img src="{src}" alt="{html.escape(view.name)}" style="max-width:100%">')
    body = "\n".join(parts)
    path.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><p><a href='../index.html'>index</a></p><h1>{html.escape(title)}</h1>\n{body}\n</body></html>",
        encoding="utf-8",
    )


def write_index(out: Path, records: list[dict[str, Any]], skipped: list[dict[str, str]], header: str) -> Path:
    """``OUT/index.html``: per image, its prediction, a link to its page and every PNG (as thumbnails)."""
    rows = []
    for rec in records:
        links = [f"<a href='{quote(rec['dir'])}/{quote(f)}'><img src='{quote(rec['dir'])}/{quote(f)}' "
                 f"height='120' title='{html.escape(f)}'></a>" for f in rec["files"] if f.endswith(".png")]  # fmt: skip
        page = [
            f"<a href='{quote(rec['dir'])}/{quote(f)}'>interactive page</a>"
            for f in rec["files"]
            if f.endswith(".html")
        ]
        rows.append(
            f"<h2>{html.escape(rec['source'])}</h2><p>prediction: <b>{html.escape(rec['prediction'])}</b> "
            f"{' '.join(page)}</p><div>{''.join(links)}</div>"
        )
    if skipped:
        items = "".join(f"<li>{html.escape(s['source'])}: {html.escape(s['error'])}</li>" for s in skipped)
        rows.append(f"<h2>skipped</h2><ul>{items}</ul>")
    path = out / "index.html"
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>FGVC Explorer export</title></head><body>"
        f"<h1>FGVC Explorer export</h1><p>{html.escape(header)}</p>{''.join(rows)}</body></html>",
        encoding="utf-8",
    )
    return path


def export_image(
    model: Any, meta: dict[str, Any], path: Path, folder: Path, options: ExplainOptions, formats: list[str], args
) -> dict[str, Any]:
    """Trace one image and write its views; returns its manifest record. Raises FGVCError for a bad image."""
    from train.explain_views import describe, image_views

    image = fgvc_core.load_image(path)
    x = fgvc_core.build_transform(meta)(image).unsqueeze(0).to(args.device)
    views, summary = image_views(model, meta, x, image, options)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    if "png" in formats:
        for view in views:
            if view.figure is not None:
                view.figure.savefig(folder / f"{view.name}.png", dpi=args.dpi)  # constrained layout: no tight bbox pass
                files.append(f"{view.name}.png")
    if "html" in formats:
        page_title = f"{path.name}: {describe(summary)}"
        write_page(folder / "report.html", page_title, views, args.plotlyjs, "png" in formats)
        files.append("report.html")
    return {"source": str(path), "dir": folder.name, "prediction": describe(summary), **summary, "files": files}


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from train.explain_views import ExplainOptions, check_options

    options = ExplainOptions(
        cam_method=args.cam_method,
        threshold=args.threshold[0] if args.threshold and len(args.threshold) == 1 else args.threshold,
        delta=args.delta,
        omega=args.omega,
        topk=args.topk,
    )
    try:
        args.device = cli_args.resolve_device(args.device)  # export_image moves each image there
        model, meta = fgvc_core.load_checkpoint(args.checkpoint, device=args.device)
        for note in check_options(model, options):
            print(f"note: {note}", file=sys.stderr)
        paths, problems = collect_images(args.images)
        if not paths:
            raise FGVCError("no images to explain: " + "; ".join(f"{p}: {why}" for p, why in problems))
    except FGVCError as exc:
        return cli_args.report_error(exc)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if "html" in args.formats and args.plotlyjs == "shared" and not (out / PLOTLY_JS).is_file():
        from plotly.offline import get_plotlyjs

        (out / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")
    skipped = [{"source": p, "error": why} for p, why in problems]
    records, taken = [], set()
    for path in tqdm(paths, desc="explain", unit="img", file=sys.stderr):
        try:
            folder = out / _folder_name(path, taken)
            records.append(export_image(model, meta, path, folder, options, args.formats, args))
        except FGVCError as exc:
            skipped.append({"source": str(path), "error": str(exc)})
            tqdm.write(f"skipped {path}: {exc}", file=sys.stderr)
    header = f"{meta['model']['name']} from {Path(args.checkpoint).name}: {len(records)} images, {len(skipped)} skipped"
    index = write_index(out, records, skipped, header)
    manifest = {"checkpoint": str(args.checkpoint), "model": meta["model"]["name"], "images": records,
                "skipped": skipped}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    print(f"{header}; open {index}")
    return 0 if not skipped else 1


def cli() -> int:
    """The ``fgvc-explain`` console script."""
    return main(get_args_parser().parse_args())


if __name__ == "__main__":
    sys.exit(cli())
