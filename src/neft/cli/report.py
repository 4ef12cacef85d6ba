"""``neft report``: evaluated runs compared in one table and one plot (docs/results.md, 'Report files')."""

from __future__ import annotations

import argparse


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``report`` subparser and its flags."""
    p = subparsers.add_parser("report", help="compare evaluated runs in one table and one plot",
                              description="Compare evaluated runs: writes OUT/report.md (accuracy and EKL/confidence "
                                          "tables pivoted by sigma, labelled by method variant), OUT/report.csv and "
                                          "OUT/accuracy_vs_sigma.png (docs/results.md, 'Report files').")
    p.add_argument("paths", nargs="+",
                   help="run directories (each with every results file neft evaluate wrote into it, whatever its "
                        "--name) or results files")
    p.add_argument("--out", default="report", help="output folder (default: %(default)s)")
    p.add_argument("--title", default=None, help="report and plot title (default: Robustness comparison)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="one name per result, in the order given (a run directory counts once per distinct "
                        "evaluation in its results files; default: each result's own label, else its method variant)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> None:
    from neft.reporting.report import write_report

    paths = write_report(args.paths, args.out, title=args.title, labels=args.labels, overwrite=args.overwrite)
    print(f"report: {paths['markdown']}\nplot: {paths['plot']}")
    for kind, path in paths.items():  # the other plots a report draws when its results call for them
        if kind not in ("markdown", "plot", "csv"):
            print(f"{kind.replace('_', '-')} plot: {path}")
