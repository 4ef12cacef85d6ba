"""``neft reproduce``: an experiment preset's (TOML) methods x sigmas x seeds grid trained, evaluated and reported;
finished cells are skipped, cells spread over GPUs or SLURM array tasks."""

from __future__ import annotations

import argparse


def add_reproduce_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``reproduce`` subparser and its flags."""
    p = subparsers.add_parser("reproduce", help="run an experiment preset (TOML) grid: train + evaluate + report",
                              description="Train, evaluate and report every cell of a methods x sigmas x seeds grid; "
                                          "finished cells are skipped, so an interrupted run continues where it "
                                          "stopped.")
    p.add_argument("config", help="TOML preset, e.g. configs/cpu-fashion-mnist.toml")
    p.add_argument("--out", default=None, help="output folder (default: the preset's `out`)")
    p.add_argument("--device", default=None, help="override the preset's compute device")
    p.add_argument("--parallel", type=int, default=1,
                   help="local GPUs to spread the cells over, one cell per GPU at a time (default: 1)")
    p.add_argument("--cells-per-device", type=int, default=1, metavar="K",
                   help="cells run at once on each device: small cells do not fill a large GPU; on a CPU the cores "
                        "are shared out (default: 1)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="run only cells K, K+N, ... (e.g. one SLURM array task: "
                        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); the report is written once all cells are done")
    p.set_defaults(func=_cmd_reproduce)


def _cmd_reproduce(args) -> None:
    from neft.experiments import reproduce

    reproduce(args.config, out=args.out, device=args.device, parallel=args.parallel, shard=args.shard,
              cells_per_device=args.cells_per_device)
