"""``neft layers``: the weights of a zoo model or your own that sit on the crossbar, those kept digital and why, and
the model's IRS snapshot points."""

from __future__ import annotations

import argparse

from neft.cli.help_texts import INIT_HELP, MODEL_HELP, SIGMA_HELP
from neft.cli.value_types import json_object


def add_layers_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``layers`` subparser and its flags."""
    from neft.models import INITS

    p = subparsers.add_parser("layers", help="list the crossbar-mapped weights of a zoo model or your own",
                              description="List the weights of a zoo model or your own (--model pkg.mod:fn) that sit "
                                          "on the crossbar (every Conv/Linear weight, LSTM/GRU/RNN weight matrix and "
                                          "MultiheadAttention projection unless --include/--exclude say otherwise), "
                                          "their shapes and counts, and "
                                          "the model's IRS snapshot points; with --sigma also each layer's "
                                          "weight-noise std over its weight std at initialisation.")
    p.add_argument("--model", default="vgg8", help=MODEL_HELP)
    p.add_argument("--model-args", type=json_object, default=None, metavar="JSON",
                   help="keyword arguments of your own model's factory, a JSON object")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default: %(default)s)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default: %(default)s)")
    p.add_argument("--in-channels", type=int, default=1, help="image channels, 3 for CIFAR (default: %(default)s)")
    p.add_argument("--init", default=None, choices=list(INITS), help=f"{INIT_HELP}, for --sigma")
    p.add_argument("--sigma", type=float, default=None,
                   help=f"also print each layer's weight-noise std at this {SIGMA_HELP} over its weight std, at init")
    p.add_argument("--device-model", default="RRAM1",
                   help="device preset or file, for --sigma (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights, for --sigma (default: %(default)s)")
    p.add_argument("--include", nargs="*", default=None, help="module-name patterns to map (default: all)")
    p.add_argument("--exclude", nargs="*", default=None, help="module-name patterns to keep digital")
    p.set_defaults(func=_cmd_layers)


def _cmd_layers(args) -> None:
    import torch

    from neft import models
    from neft.chip.crossbar import Crossbar

    torch.manual_seed(args.seed)
    model = models.create(args.model, args.classes, args.in_channels, args.width, args.init, args.model_args)
    crossbar = Crossbar(model, args.device_model, include=args.include, exclude=args.exclude)
    weights = crossbar.weights()
    total = 0
    digital = []
    for name, shape, count, placement in crossbar.summary():
        if placement != "crossbar":
            digital.append(f"  {name:<38} {str(list(shape)):<24} {count:>10,}  {placement.removeprefix('digital: ')}")
            continue
        ratio = ""
        if args.sigma is not None:  # RMS weight-noise std over the layer's weight std, at initialisation
            w = weights[name].detach()
            noise = crossbar.device_model.std(w, args.sigma).pow(2).mean().sqrt()
            ratio = f"  noise/weight std {float(noise / w.std()):.2f}"
        print(f"{name:<40} {str(list(shape)):<24} {count:>10,}{ratio}")
        total += count
    taps = models.default_taps(model)
    print(f"{len(crossbar.names)} crossbar-mapped weight tensors, {total:,} weights; IRS taps: "
          + (', '.join(f'{n} (pool {p})' for n, p in taps) if taps else "none declared (irs_taps); modules to "
             "tap with --taps: " + ", ".join(n for n, m in model.named_modules() if n and not list(m.children()))))
    if digital:
        print(f"{len(digital)} digital parameter tensors (exact, no variation), and why:")
        print("\n".join(digital))
