"""``neft import``: weights trained elsewhere (a plain state_dict file) turned into a run directory that ``neft
evaluate`` and ``neft report`` work on."""

from __future__ import annotations

import argparse

from neft.cli.help_texts import MODEL_HELP, SIGMA_HELP
from neft.cli.value_types import json_object


def add_import_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``import`` subparser and its flags."""
    p = subparsers.add_parser("import", help="turn weights trained elsewhere (a state_dict file) into a run directory",
                              description="Load a plain PyTorch state_dict (torch.save(model.state_dict(), FILE)) "
                                          "into the network --model builds, check it on --dataset and write "
                                          "RUN/config.json, checkpoint.pt and summary.json, so `neft evaluate RUN` "
                                          "(write-verify included) and `neft report` work on it. The 'module.' "
                                          "prefix of a DataParallel/DDP state_dict is removed when every key "
                                          "carries it (and said so). State the input normalisation the weights "
                                          "were trained with (--normalisation, or --mean and --std): evaluation "
                                          "feeds the network images normalised that way, and a network given other "
                                          "inputs than it was trained on gives wrong accuracies without any error.")
    p.add_argument("--model", required=True, help=MODEL_HELP.replace(" (default: %(default)s)", ""))
    p.add_argument("--model-args", type=json_object, default=None, metavar="JSON",
                   help="keyword arguments of the model's factory, a JSON object")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default: %(default)s)")
    p.add_argument("--weights", required=True, metavar="FILE", help="state_dict file written by torch.save")
    p.add_argument("--dataset", required=True, help="the data set the network classifies (as for `neft train`)")
    p.add_argument("--image-size", type=int, default=None, metavar="S", help="folder:/npz: data sets: image side")
    p.add_argument("--data-dir", default=None, help="folder holding the data set")
    p.add_argument("--out", required=True, help="run directory to create")
    from neft.training.objectives import METHODS

    p.add_argument("--method", default="vanilla", choices=list(METHODS),
                   help="how the network was trained, for the record (default: %(default)s)")
    p.add_argument("--sigma", type=float, default=0.0,
                   help=f"the training {SIGMA_HELP}, for the record and evaluate's default sigmas (default: "
                        "%(default)s)")
    p.add_argument("--device-model", default="RRAM1", help="device preset or file evaluate uses by default "
                                                           "(default: %(default)s)")
    p.add_argument("--normalisation", choices=["dataset", "none"], default=None,
                   help="the input normalisation the weights were trained with: dataset (the data set's own mean "
                        "and std, as neft train uses; the default) or none (pixel values in [0, 1]); for other "
                        "statistics give --mean and --std instead. It matters: a wrong one gives wrong accuracies "
                        "without any error")
    p.add_argument("--mean", type=float, nargs="+", default=None, metavar="M",
                   help="the per-channel means the weights were trained with, of pixel values in [0, 1] (one per "
                        "channel, e.g. 0.485 0.456 0.406); with --std")
    p.add_argument("--std", type=float, nargs="+", default=None, metavar="S",
                   help="the per-channel stds the weights were trained with, of pixel values in [0, 1] (one per "
                        "channel, e.g. 0.229 0.224 0.225); with --mean")
    p.add_argument("--label", default=None, help="name in reports (default: 'imported FILE-STEM')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.set_defaults(func=_cmd_import)


def _normalisation(args) -> str | dict:
    """The normalisation the flags state: --normalisation's word, or the given --mean and --std (both needed)."""
    from neft.common.errors import SettingError

    if args.mean is None and args.std is None:
        return args.normalisation or "dataset"
    if args.normalisation is not None:
        raise SettingError("normalisation", "give the per-channel statistics as --mean M... and --std S... "
                                            "together, without --normalisation (which states 'dataset' or 'none')")
    if args.mean is None or args.std is None:
        given, missing = ("mean", "std") if args.std is None else ("std", "mean")
        raise SettingError(missing, f"--{given} was given without --{missing}: give the per-channel statistics as "
                                    "--mean M... and --std S... together")
    return {"mean": args.mean, "std": args.std}


def _cmd_import(args) -> None:
    from neft.data.normalisation import describe
    from neft.runs.importing import import_run

    summary = import_run(args.model, args.weights, args.dataset, args.out, model_args=args.model_args,
                         width=args.width, image_size=args.image_size, data_dir=args.data_dir, method=args.method,
                         sigma=args.sigma, device_model=args.device_model, normalisation=_normalisation(args),
                         label=args.label, overwrite=args.overwrite)
    if summary["stripped_prefix"]:
        print(f"note: removed the {summary['stripped_prefix']!r} prefix of a DataParallel/DistributedDataParallel "
              "state_dict from every key")
    print(f"imported {args.weights} into {args.out} with input normalisation "
          f"{describe(**summary['normalisation'])}: clean test accuracy {summary['test_accuracy_clean']:.2f}%; "
          f"next: neft evaluate {args.out}")
