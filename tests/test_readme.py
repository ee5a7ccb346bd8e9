"""The README's code runs: every ```python block, on tiny stand-ins, and its make_synth command writes the held-out
copy the demo numbers come from (not a demo model's training stream)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from tests.layout_fixtures import make_cub
from train import make_demo_data, make_synth

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)

# README text -> what the test runs instead: user files become tiny fixture files, paper-sized models tiny ones.
# Everything else (the demo checkpoints included) runs as written. Every key must still occur in the README.
SUBSTITUTIONS = {
    '"my_bird.jpg"': "{image}",
    '"/data/CUB_200_2011"': "{cub}",
    'backbone="resnet50", pretrained="resnet50.pth"': 'backbone="resnet_tiny", pretrained={backbone_file}',
    'backbone="vit_base_patch16_224", img_size=448': 'backbone="vit_tiny_patch16_224", img_size=224',
}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("readme")
    Image.new("RGB", (200, 150), (180, 120, 40)).save(tmp / "bird.jpg")
    cub = make_cub(tmp / "cub")
    # A CRA-SMRA checkpoint's backbone part is a valid resnet_tiny backbone file (load_backbone_weights).
    backbone_file = REPO / "checkpoints" / "cra_smra_demo.safetensors"
    return {"image": repr(str(tmp / "bird.jpg")), "cub": repr(str(cub.root)), "backbone_file": repr(str(backbone_file))}


def test_the_readme_has_python_blocks_and_every_substitution_still_applies():
    assert PYTHON_BLOCKS
    code = "\n".join(PYTHON_BLOCKS)
    assert [key for key in SUBSTITUTIONS if key not in code] == []


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index, stand_ins, monkeypatch):
    code = PYTHON_BLOCKS[index]
    for text, replacement in SUBSTITUTIONS.items():
        code = code.replace(text, replacement.format(**stand_ins))
    monkeypatch.chdir(REPO)  # the blocks name repository paths (checkpoints/...) as a user in the checkout would
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "readme"})  # noqa: S102


def test_readme_make_synth_command_writes_the_demo_test_data():
    lines = [ln for ln in README.splitlines() if "-m train.make_synth" in ln]
    parsed = [
        make_synth.get_args_parser().parse_args(shlex.split(ln.split("-m train.make_synth", 1)[1])) for ln in lines
    ]
    (demo,) = [args for args in parsed if Path(args.out) == Path("data/synth")]
    written = {"num_classes": demo.classes, "per_class": demo.per_class, "size": demo.size, "seed": demo.seed,
               "test_fraction": demo.test_fraction}  # fmt: skip
    assert written == make_demo_data.DEMO
    # no README command writes the demo models' training stream (e.g. the seed-2 validation copy is fresh)
    assert all(args.seed not in make_synth.training_stream_seeds(REPO / "checkpoints") for args in parsed)


def _sources() -> list[Path]:
    roots = [REPO / "app.py", *(REPO / d for d in ("fgvc_core", "train", "pages", "tests", "benchmarks"))]
    return [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*.py")))]


def _module_file(dotted: str) -> Path | None:
    base = REPO.joinpath(*dotted.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _resolves(dotted: str) -> bool:
    """``fgvc_core.a.b[.name]``: the longest prefix is a module file, and the next part is a name in its source."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        source = _module_file(".".join(parts[:cut]))
        if source is not None:
            return cut == len(parts) or re.search(rf"\b{parts[cut]}\b", source.read_text(encoding="utf-8")) is not None
    return False


def test_docstrings_point_only_at_files_and_modules_that_exist():
    """DESIGN.md and METHODS.md live outside the repository; ``docs/...`` paths and ``fgvc_core.*`` modules named in
    the code must exist (a reference to a ``figures_cra`` that is really ``figure_cra`` is caught here)."""
    problems = []
    for path in _sources():
        if path == Path(__file__):
            continue
        text, where = path.read_text(encoding="utf-8"), path.relative_to(REPO)
        problems += [f"{where}: {m}" for m in re.findall(r"\b(?:DESIGN|METHODS)\.md\b", text)]
        problems += [f"{where}: {m}" for m in re.findall(r"\bdocs/[\w/.-]+\.md\b", text) if not (REPO / m).is_file()]
        if where.parts[0] != "tests":  # tests name missing modules on purpose (registry errors)
            problems += [f"{where}: {m}" for m in set(re.findall(r"\bfgvc_core(?:\.\w+)+", text)) if not _resolves(m)]
        problems += [f"{where}: {m}" for m in re.findall(r"``(\w+)``", text) if m.startswith("figures_")]
    assert problems == []
