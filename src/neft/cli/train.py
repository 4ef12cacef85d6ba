"""``neft train``: train one network into a run directory (config.json, checkpoint.pt, train_log.csv), named after
its settings unless ``--out`` is given; ``--resume`` continues a run with its own settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from neft.cli.chip_arguments import (
    add_chip_arguments,
    chip_settings,
    circuit_settings,
    given_flags,
    training_device_model,
)
from neft.cli.help_texts import SIGMA_HELP
from neft.cli.train_arguments import add_train_arguments, taps
from neft.common import distributed

# objective settings named in default run directories when not at their defaults
_OBJECTIVE_FLAGS = {"censor_k": "k", "rcg_scale": "scale", "lipschitz_lambda": "lambda",
                    "correctnet_lambda": "lambda", "distill_alpha": "alpha", "distill_temperature": "T"}


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``train`` subparser: the training flags, the chip flags, then where the run goes."""
    p = subparsers.add_parser("train", help="train one network (vanilla, noise-injection, ovf, irs, rcg, lipschitz, "
                                            "correctnet or distill)",
                              description="Train one network and write config.json, checkpoint.pt and "
                                          f"train_log.csv. sigma is the {SIGMA_HELP} (e.g. 0.1 = 10 %).")
    add_train_arguments(p)
    add_chip_arguments(p, training=True)
    p.add_argument("--out", default=None, help="run directory (default: runs/MODEL-DATASET-METHOD-sSIGMA-seedSEED)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last epoch; `--resume --out RUN` alone takes every "
                        "setting from RUN/config.json, and other flags given must agree with it; a folder that holds "
                        "no run (no config.json) is refused, never started afresh")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> None:
    from neft.data import own as userdata
    from neft.models import default_init
    from neft.models.registry import short_name
    from neft.training import TrainConfig, load_config

    if args.resume and args.out:  # a folder without a run (no config.json) is refused, whatever flags are given
        _train_and_print(_resume_config(args), args)
        return
    device_model = training_device_model(args)
    config = TrainConfig(
        model=args.model, model_args=args.model_args, width=args.width, init=args.init, dataset=args.dataset,
        data_dir=args.data_dir, image_size=args.image_size,
        method=args.method, sigma=args.sigma, sigma_block=args.sigma_block, device_model=device_model,
        beta=args.beta, temperature=args.temperature, censor_k=args.censor_k, rcg_scale=args.rcg_scale,
        lipschitz_lambda=args.lipschitz_lambda, correctnet_lambda=args.correctnet_lambda, teacher=args.teacher,
        distill_alpha=args.distill_alpha, distill_temperature=args.distill_temperature,
        taps=taps(args.taps), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, seed=args.seed, validation=args.validation, select_on=args.select_on,
        val_runs=args.val_runs, train_subset=args.train_subset, test_subset=args.test_subset, device=args.device,
        tensorboard=args.tensorboard,
        **circuit_settings(args, given=True),
    )
    variant = (config.method + (f"-T{config.temperature:g}" if config.temperature != 1 else "")
               + (f"-beta{args.beta:g}" if args.beta is not None else "")
               + "".join(f"-{flag}{getattr(config, name):g}" for name, flag in _OBJECTIVE_FLAGS.items()
                         if getattr(config, name) != getattr(TrainConfig, name))
               + (f"-from-{Path(config.teacher).resolve().name}" if config.teacher else "")
               + (f"-{config.init}" if config.init not in (None, default_init(config.model)) else ""))
    dataset = userdata.short_name(config.dataset) if userdata.is_user_dataset(config.dataset) else config.dataset
    args.out = args.out or f"runs/{short_name(config.model)}-{dataset}-{variant}-s{config.sigma:g}-seed{config.seed}"
    if args.resume:  # the run named after these settings must exist: --resume never starts a fresh run
        load_config(args.out)
    _train_and_print(config, args)


def _train_and_print(config, args) -> None:
    from neft.training import train

    summary = train(config, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    if distributed.is_main():
        print(f"best epoch {summary['best_epoch']}: {summary['best_val_kind']} validation "
              f"{summary['best_val_accuracy']:.2f}%, "
              f"clean test {summary['test_accuracy_clean']:.2f}%{_ideal(summary)}; checkpoint in "
              f"{Path(args.out) / 'checkpoint.pt'}")


def _ideal(summary: dict) -> str:
    """`` (ideal layers, without the circuit tile=64 adc=4b it trained through)`` for a run trained through the
    crossbar circuit, whose clean accuracy skips it; empty otherwise."""
    from neft.chip.circuit_settings import CircuitSettings

    circuit = CircuitSettings(**summary["train_circuit"]).label()
    return f" (ideal layers, without the circuit{circuit} it trained through)" if circuit else ""


def _resume_config(args):
    """``neft train --resume --out RUN``: the run's own settings; flags given with it must confirm them (a
    mismatch is refused by :func:`neft.training.trainer.train`, naming each differing value)."""
    from neft.chip import devices
    from neft.training import load_config
    from neft.training.resume import resume_hint

    config = load_config(args.out)
    chip = chip_settings(args)  # chip flags given with --resume must be the run's own chip settings
    given = given_flags(args, add_train_arguments)
    for name in given - set(chip) - {"device_model"}:
        setattr(config, name, taps(args.taps) if name == "taps" else getattr(args, name))
    trained = devices.get(config.device_model).to_dict()
    # with --device-model: the device model a fresh run of these flags would record must be the run's own
    asked = devices.get(training_device_model(args)).to_dict() if "device_model" in given else chip
    changed = {name: value for name, value in asked.items() if trained.get(name) != value}
    if changed:
        values = "; ".join(f"{name}: {trained.get(name)!r} in the run, {value!r} given"
                           for name, value in changed.items())
        raise ValueError(f"cannot resume {str(args.out)!r} with different settings ({', '.join(changed)}): {values}; "
                         f"{resume_hint(Path(args.out))}")
    return config
