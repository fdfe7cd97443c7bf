"""`python -m harness.report NAME`: rebuild a study's report from the stores alone (the study as its runs
recorded it; no study file needed), then the index. `--all` rebuilds every study the store holds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import harness.browse
from harness.cli import HelpFormatter, add_store_flags, exit_now, reports_folder
from harness.stores import Stores

EPILOG = """\
examples:
  python -m harness.report sgd_vs_adam
  python -m harness.report --all
  python -m harness.report sgd_vs_adam --root /data/mlruns --reports /tmp/reports
  python -m harness.report sgd_vs_adam --migrate      stores from an older harness: migrate, then report"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from harness.browse import LOCAL_UI

    parser = argparse.ArgumentParser(
        prog="python -m harness.report", epilog=EPILOG, formatter_class=HelpFormatter,
        description="Rebuild a study's markdown report (ROOT/reports/NAME/README.md, its figures and report.html) "
                    "from the MLflow and Optuna stores alone, then the index ROOT/reports/README.md.")
    which = parser.add_argument_group("which reports")
    which.add_argument("name", nargs="?", metavar="NAME", help="the study (or variant) to report on")
    which.add_argument("--all", action="store_true", help="rebuild every study that has MLflow runs")
    add_store_flags(parser)
    parser.add_argument("--migrate", action="store_true", help="first bring stores written by an older harness "
                        "to this release's schema (once; the error that asks for it says so)")
    parser.add_argument("--ui-url", metavar="URL", help="base URL of the MLflow UI the report links to (default: "
                        f"the tracking URI if it is a server, else {LOCAL_UI} as `mlflow ui` serves it)")
    args = parser.parse_args(argv)
    if (args.name is None) == (not args.all):
        parser.error("give a study NAME or --all (not both)")
    return args


def recorded_names(stores: Stores, studies: Path) -> list[str]:
    """Every study the tracking store holds runs of: those that recorded their study, and those of a study
    file in `studies` (or a variant of one) from before studies were recorded."""
    import mlflow

    from harness.analysis.recorded import is_recorded
    from harness.stores import use_tracking
    from harness.study_file import list_studies

    if stores.tracking_uri is None and not (stores.root / "mlflow.db").is_file():
        return []
    use_tracking(stores)
    files = set(list_studies(studies))
    names = sorted(e.name for e in mlflow.search_experiments()
                   if not mlflow.search_runs([e.experiment_id], max_results=1).empty)
    return [n for n in names if n.split("--")[0] in files or is_recorded(n, stores)]


def _suite(name: str, studies: Path, stores: Stores):
    """The suite `name` names (a suite file, or a variant of one as its run recorded it), or None for a study."""
    from harness.reporting.suite_report import recorded_changes
    from harness.spec import StudySpec
    from harness.study_file import load_study

    base = name.split("--")[0]
    if not (studies / f"{base}.py").is_file():
        return None
    found = load_study(base, studies, suites=True)
    if isinstance(found, StudySpec):
        return None
    return found if name == base else found.variant(recorded_changes(name, stores))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.browse.ui_port = args.ui_port  # every link to a local store's UI, in this process and its workers
    try:
        args.reports = reports_folder(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import optuna

    from harness.analysis.recorded import recorded_study
    from harness.reporting.html import render_html
    from harness.reporting.markdown import build_index, build_report
    from harness.reporting.suite_report import publish_suite
    from harness.run.migrate import migrate, rewrite_sources
    from harness.suite_spec import workload_specs

    stores = Stores(args.root, args.tracking_uri, args.storage)
    if not args.all and stores.tracking_uri is None and not (stores.root / "mlflow.db").is_file():
        # nothing recorded here: say so without creating an empty store the next command would mistake for one
        base = args.name.split("--")[0]
        known = (args.studies / f"{base}.py").is_file()
        why = (f"no runs of {args.name!r} in {stores.root}; run `python -m harness.study {base}` first" if known else
               f"unknown study {args.name!r}; studies in {args.studies}: "
               f"{', '.join(p.stem for p in sorted(args.studies.glob('*.py')) if not p.stem.startswith('_'))}")
        print(f"error: {why}", file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = recorded_names(stores, args.studies) if args.all else [args.name]
    failed = 0
    for name in names:
        try:
            suite = _suite(name, args.studies, stores)
            if suite is not None:  # a suite: its report over its workloads' studies
                readme = publish_suite(suite, workload_specs(suite, args.studies), stores, args.reports)
                print(f"wrote {readme}")
                continue
            if args.migrate:
                rewrite_sources(name, stores)
            spec = recorded_study(name, stores, args.studies)  # as its runs recorded it, else its file
            if args.migrate:
                print(migrate(spec, stores))
            readme = build_report(spec, stores, args.reports, args.ui_url)
            render_html(readme.parent)
            print(f"wrote {readme}")
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    if args.all and not names:
        print(f"no study has runs in {stores.mlflow_uri}", file=sys.stderr)
    if len(names) > failed:
        print(f"wrote {build_index(args.reports)}")
    if failed and not args.all:  # the one study asked for cannot be reported: unknown, unrun, another schema
        return 2
    return 1 if failed or not names else 0


if __name__ == "__main__":
    exit_now(main())
