"""Run an ablation grid (named variants x seeds, equal budget) and write its results table; resumable run by run.

python -m train.ablate --grid cra_table3 --seeds 0 1 2                  # -> runs/ablate/cra_table3/results.md
python -m train.ablate --grid cra_delta --seeds 0 1 2 --jobs 2          # two runs at a time, one thread each
python -m train.ablate --grid my_grid.yaml --out runs/ablate/mine --table-dir benchmarks/ablation
python -m train.ablate --grid cra_table3 --seeds 0 1 2 --stash           # before a session ends (see below)
python -m train.ablate --grid cra_table3 --seeds 0 1 2 --ship            # median seeds -> checkpoints/ablation
python -m train.ablate --claims --table-dir benchmarks/ablation          # the papers' claims -> <table-dir>/claims.md
python -m train.ablate --list                                           # the named grids

Named grids live in train/configs/ablation/ (cra_table3, cra_delta, cra_gamma, rams). Rerun the same command to
continue: finished runs are skipped, an unfinished one resumes from its last checkpoint. Across sessions on fresh
clones, ``--stash`` copies to train/wip_runs/ablate/<grid>/ (to be committed) the resumable files of every unfinished
run and the record and logs of every finished one (its weights too while its variant lacks seeds), and a later run
restores the ones its --out lacks. ``--ship`` writes the median seed of every complete variant, in float16, to
checkpoints/ablation/<grid>/<variant>/seed<s>/ (what the app's Compare page opens); with a committed results table
(<table-dir>/<grid>_runs.csv) only the median run's folder must be here, e.g. retrained on a fresh clone with
``--only <variant> --seeds <s>``, and it must reproduce the table's test top-1. See docs/ablations.md.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from fgvc_core.errors import FGVCError
from train import cli_args

WIP = Path(__file__).resolve().parent / "wip_runs" / "ablate"
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "ablation"
TABLES = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation"


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli_args.new_parser(__doc__)
    parser.add_argument("--grid", help="a named grid (see --list) or a grid .yaml file")
    parser.add_argument("--seeds", nargs="+", type=cli_args.nonnegative_int, default=[0, 1, 2],
                        help="train.seed of each run (default 0 1 2)")  # fmt: skip
    parser.add_argument("--out", type=cli_args.output_dir, help="run folders and tables (default runs/ablate/<grid>)")
    parser.add_argument("--jobs", type=cli_args.int_in(1, 64), default=1,
                        help="runs in parallel processes, one thread each (default 1)")  # fmt: skip
    parser.add_argument("--only", action="append", metavar="VARIANT", help="run only these variants (repeatable)")
    parser.add_argument("--explain-limit", type=cli_args.int_in(0), default=None,
                        help="test images for the pointing game (default: the grid's; 0: none)")  # fmt: skip
    parser.add_argument("--table-dir", type=cli_args.output_dir,
                        help="also copy the tables there as <grid>.md, _runs.csv, _summary.csv")  # fmt: skip
    parser.add_argument("--stash", action="store_true",
                        help="copy the runs' resumable files to the stash folder and exit")  # fmt: skip
    parser.add_argument("--stash-dir", type=cli_args.output_dir,
                        help="stash folder (default train/wip_runs/ablate/<grid>)")  # fmt: skip
    parser.add_argument("--ship", action="store_true",
                        help="write each complete variant's median seed to the ship folder and exit")  # fmt: skip
    parser.add_argument("--ship-dir", type=cli_args.output_dir,
                        help="ship folder (default checkpoints/ablation/<grid>)")  # fmt: skip
    parser.add_argument("--claims", action="store_true",
                        help="check the papers' claims on --table-dir's tables, write claims.md, exit")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the named grids and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    from fgvc_core.engine import ablation

    if args.list:
        for name in ablation.grid_names():
            print(f"{name}: {', '.join(v.name for v in ablation.load_grid(name).variants)}")
        return 0
    command = "python -m train.ablate " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.claims:
        return _claims(Path(args.table_dir or TABLES), command)
    if not args.grid:
        parser.error("--grid is required (or --list, --claims)")
    try:
        grid = ablation.load_grid(args.grid)
        out = Path(args.out or Path("runs") / "ablate" / grid.name)
        runs = ablation.select_variants(ablation.expand(grid, args.seeds, out), args.only)
        stash = Path(args.stash_dir or WIP / grid.name)
        if args.stash:
            return _stash(runs, stash)
        if args.ship:
            known = _table_records(Path(args.table_dir or TABLES), grid.name)
            ablation.ship_medians(runs, Path(args.ship_dir or SHIPPED / grid.name), known=known)
            return 0
        _restore(runs, stash)
        for line in ablation.ensure_benchmarks(grid, runs):
            print(line, flush=True)
        records = _run(grid, runs, out, args, command)
    except FGVCError as exc:
        return cli_args.report_error(exc)
    paths = ablation.write_tables(out, grid, runs, records, command)
    if args.table_dir is not None:
        target = Path(args.table_dir)
        target.mkdir(parents=True, exist_ok=True)
        suffixes = {"markdown": ".md", "runs": "_runs.csv", "summary": "_summary.csv"}
        for key, path in paths.items():
            shutil.copyfile(path, target / f"{grid.name}{suffixes[key]}")
    print(f"{len(records)} of {len(runs)} runs finished; table: {paths['markdown']}")
    return 0


def _stash(runs, target: Path) -> int:
    from fgvc_core.engine.ablation import stash_files
    from train.make_demo import copy_run

    for run in runs:
        files = stash_files(run, runs)
        if files is None and not (run.folder / "last.safetensors").is_file():
            continue  # not started
        folder = target / run.variant / f"seed{run.seed}"
        if files is not None and folder.exists():
            shutil.rmtree(folder)  # a finished run replaces what an earlier stash of it held (its checkpoints)
        copied = copy_run(run.folder, folder, files)
        print(f"stashed {run.name}: {', '.join(copied)}")
    return 0


def _table_records(tables: Path, grid: str) -> list[dict]:
    """The runs of ``<tables>/<grid>_runs.csv`` (a committed results table), or none when there is no table."""
    from fgvc_core.app.ablation_tables import read_runs_table

    path = tables / f"{grid}_runs.csv"
    return read_runs_table(path, "tables folder").records if path.is_file() else []


def _claims(tables: Path, command: str) -> int:
    from fgvc_core.app.ablation_tables import read_runs_table
    from fgvc_core.engine.ablation_claims import CLAIMS, check_claims, claims_markdown

    records = {}
    for grid in dict.fromkeys(c.grid for c in CLAIMS):
        path = tables / f"{grid}_runs.csv"
        if path.is_file():
            try:
                records[grid] = read_runs_table(path, "tables folder").records
            except FGVCError as exc:
                return cli_args.report_error(exc)
    results = check_claims(records)
    tables.mkdir(parents=True, exist_ok=True)
    (tables / "claims.md").write_text(claims_markdown(results, command), encoding="utf-8")
    for r in results:
        print(f"{r.claim.paper}: {r.claim.text}: {r.verdict}")
    print(f"wrote {tables / 'claims.md'}")
    return 0


def _restore(runs, source: Path) -> None:
    """Copy stashed runs into run folders that have no checkpoint (a fresh clone); never over a local run."""
    from fgvc_core.engine.ablation import read_result as ablation_done
    from train.make_demo import copy_run

    for run in runs:
        stashed = source / run.variant / f"seed{run.seed}"
        local = (run.folder / "last.safetensors").exists() or ablation_done(run.folder)
        if not local and ((stashed / "last.safetensors").is_file() or ablation_done(stashed)):
            print(f"restoring the stashed run {run.name} from {stashed}")
            copy_run(stashed, run.folder, tuple(sorted(p.name for p in stashed.iterdir() if p.is_file())))


def _run(grid, runs, out: Path, args: argparse.Namespace, command: str) -> list[dict]:
    from tqdm import tqdm

    from fgvc_core.engine import ablation

    done = sum(ablation.read_result(r.folder) is not None for r in runs)
    bar = tqdm(total=len(runs), initial=done, desc=f"ablation {grid.name}", unit="run", disable=args.no_progress)
    finished: list[dict] = []

    def on_finished(record: dict) -> None:  # the table is current after every run, so a kill loses nothing
        bar.update(1)
        finished.append(record)
        known = {(r.variant, r.seed) for r in runs}
        records = [ablation.read_result(r.folder) for r in runs]
        ablation.write_tables(
            out, grid, runs, [r for r in records if r and (r["variant"], r["seed"]) in known], command
        )

    def log(line: str) -> None:
        (tqdm.write if not args.no_progress else print)(line)
        sys.stdout.flush()

    try:
        return ablation.run_grid(grid, runs, args.jobs, args.explain_limit, log=log, on_finished=on_finished)
    except FGVCError:
        log(f"the grid stopped; {len(finished)} run(s) finished in this session (rerun to continue)")
        raise
    finally:
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
