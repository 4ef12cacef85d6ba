"""``neft demo``: the main job, where NeFT helps on real digits (noise-injection, T=4, OVF; release vs PyTorch
init), trained, evaluated and reported in one resumable command."""

from __future__ import annotations

import argparse

from neft.cli.help_texts import SIGMA_HELP


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``demo`` subparser and its flags."""
    p = subparsers.add_parser("demo", help="the main job: where NeFT helps, on real digits (noise-injection, T=4, "
                                           "OVF; release vs PyTorch init)",
                              description="Train noise-injection, its temperature ablation (T=4) and OVF with the "
                                          "release's init, and noise-injection and OVF with PyTorch's init (plus "
                                          "vanilla), three seeds each, Monte-Carlo-evaluate each across sigma 0..0.4 "
                                          "and write OUT/report.md and OUT/accuracy_vs_sigma.png. Resumable: "
                                          "finished runs are reused.")
    p.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--dataset", default="mnist-5k", help="mnist-5k (default, embedded) or fashion-mnist, ...")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the data set (default: $NEFT_DATA, then /usr/share/datasets)")
    p.add_argument("--sigma", type=float, default=None, help=f"training {SIGMA_HELP} (default: 0.35)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: 30)")
    p.add_argument("--runs", type=int, default=None, help="Monte Carlo runs per sigma (default: 50)")
    p.add_argument("--cells-per-device", type=int, default=2, metavar="K",
                   help="networks trained and evaluated at once (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> None:
    from neft.experiments import demo

    demo(out=args.out, dataset=args.dataset, data_dir=args.data_dir, sigma=args.sigma, epochs=args.epochs,
         runs=args.runs, device=args.device, cells_per_device=args.cells_per_device)
