"""``neft rcg-search``: the RCG authors' golden-section search of rcg's training-noise scale at a fixed k
(docs/method.md, 'RCG'), on the training flags of ``neft train``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from neft.chip.circuit_settings import FIELDS as CIRCUIT_FIELDS
from neft.cli.chip_arguments import circuit_settings, training_device_model
from neft.cli.train_arguments import add_train_arguments, taps
from neft.common.errors import SettingError


def add_rcg_search_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``rcg-search`` subparser: the training flags (method rcg), then the search's own."""
    p = subparsers.add_parser("rcg-search", help="the RCG authors' search of the training-noise scale at a fixed k",
                              description="Golden-section search of rcg's training-noise scale (--rcg-scale, set by "
                                          "the search) in [LOW, HIGH] at a fixed --censor-k: POINTS scales, SEEDS "
                                          "networks each, every point scored by the mean over its seeds of the 1st "
                                          "or 5th percentile of the accuracy over VAL_CHIPS programmed chips at "
                                          "--sigma on each run's validation split (docs/method.md, 'RCG'). "
                                          "Resumable: finished runs of the same settings are reused "
                                          "(OUT/scale{S}-seed{N}-{KEY}, KEY a digest of the other training "
                                          "settings).")
    add_train_arguments(p)
    p.set_defaults(method="rcg")
    p.add_argument("--out", default="runs/rcg-search", help="output folder (default: %(default)s)")
    p.add_argument("--low", type=float, default=0.5, help="smallest scale searched (default: %(default)s)")
    p.add_argument("--high", type=float, default=2.5, help="largest scale searched (default: %(default)s)")
    p.add_argument("--points", type=int, default=5, help="scales trained in all, >= 2 (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="training seeds per scale (default: %(default)s)")
    p.add_argument("--score", default="p5", choices=["p1", "p5"],
                   help="percentile of the validation chips' accuracy a scale is scored by (default: %(default)s)")
    p.add_argument("--val-chips", type=int, default=50, help="validation chips per network (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_rcg_search)


def _cmd_rcg_search(args) -> None:
    from neft.experiments.rcg_search import search
    from neft.training import TrainConfig

    if args.method != "rcg":
        raise SettingError("method", f"rcg-search trains rcg networks; drop --method {args.method}")
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        raise SettingError("seeds", f"seeds must be a comma list of integers like 0,1,2, got {args.seeds!r}") from None
    circuit = circuit_settings(args, given=True)  # a chip preset fills the circuit flags not written
    config = TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
                            if hasattr(args, field.name) and field.name not in CIRCUIT_FIELDS}, **circuit)
    config.taps, config.device_model = taps(args.taps), training_device_model(args)
    summary = search(config, args.out, low=args.low, high=args.high, points=args.points,
                     seeds=seeds, score=args.score,
                     val_chips=args.val_chips, progress=not args.quiet)
    for point in sorted(summary["points"], key=lambda p: p["scale"]):
        print(f"scale {point['scale']:<6g} validation {args.score} {point['score']:.2f} % (mean over seeds; "
              f"mean accuracy {point['val_mean']:.2f} %)")
    print(f"best scale {summary['best']['scale']:g}; wrote {Path(args.out) / 'search.json'}")
