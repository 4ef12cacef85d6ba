"""``neft evaluate``: Monte Carlo evaluation of a trained run across sigma on simulated programmed chips, with
write-verify, chip, per-chip repair and circuit settings; writes results.json, results.csv and
accuracy_vs_sigma.png into the run directory (one result file per point of a write-verify or drift-time sweep)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neft.cli.chip_arguments import add_chip_arguments, add_circuit_arguments, chip_settings, circuit_settings
from neft.cli.help_texts import SIGMA_HELP
from neft.cli.value_types import chips_per_pass, fractions
from neft.common import distributed


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``evaluate`` subparser and its flags, in the order ``--help`` lists them."""
    p = subparsers.add_parser("evaluate", help="Monte Carlo evaluation of a trained run across sigma",
                              description="Evaluate RUN_DIR on R simulated programmed chips per sigma; writes "
                                          "results.json, results.csv and accuracy_vs_sigma.png into RUN_DIR.")
    _add_sweep_arguments(p)
    _add_write_verify_arguments(p)
    add_chip_arguments(p, training=False)
    _add_chip_repair_arguments(p)
    add_circuit_arguments(p)
    _add_execution_arguments(p)
    _add_output_arguments(p)
    p.set_defaults(func=_cmd_evaluate)


def _add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """The run, the sigmas, the chips per sigma, the device model and the chips' seed."""
    p.add_argument("run_dir", help="run directory written by `neft train`")
    p.add_argument("--sigmas", default=None, help=f"{SIGMA_HELP}: list '0,0.1,0.2' or 'start:stop:step' "
                                                  "(default: 0 and the training sigma)")
    p.add_argument("--runs", type=int, default=1000, help="Monte Carlo runs (chips) per sigma (default: %(default)s)")
    p.add_argument("--ci-target", type=float, default=None, metavar="P",
                   help="stop a sigma once the 95 %% CI half-width is below P percentage points (>= 30 runs)")
    p.add_argument("--device-model", default=None,
                   help="device preset, chip preset (aihwkit-inference) or file; `neft devices` lists them "
                        "(default: the one trained with)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the chips (default: %(default)s)")


def _add_write_verify_arguments(p: argparse.ArgumentParser) -> None:
    """Selective write-verify (SWIM) and read noise."""
    p.add_argument("--write-verify", type=fractions, default=[0.0], metavar="P",
                   help="fraction of the mapped weights write-verified on every chip (selective write-verify, "
                        "SWIM); a comma list such as 0,0.01,0.05,0.1 evaluates each and writes NAME_wvP.json per "
                        "fraction (default: 0)")
    p.add_argument("--verify-select", default="magnitude", choices=["magnitude", "random", "swim", "swim-release"],
                   help="which weights are verified: largest |w|/max|W|, seeded random, SWIM's second-derivative "
                        "sensitivity on 1024 training images, or the SWIM release's score (alpha 1e6, first "
                        "derivative added) (default: %(default)s)")
    p.add_argument("--verified-sigma", type=float, default=0.0, metavar="S",
                   help="variation left on a write-verified device after verification: the std of its "
                        "conductance as a fraction of its conductance range, like sigma (default: %(default)s: "
                        "programmed exactly)")
    p.add_argument("--read-sigma", type=float, default=None, metavar="S",
                   help="read noise, drawn afresh on every read (every test image): its std as a fraction of the "
                        "device's conductance range, like sigma (default: the device model's, 0 unless its file "
                        "sets read_sigma)")


def _add_chip_repair_arguments(p: argparse.ArgumentParser) -> None:
    """Per-chip repairs before testing: BatchNorm recalibration and the tuned block (TSB)."""
    p.add_argument("--recalibrate-bn", type=int, default=0, metavar="N",
                   help="re-estimate the BatchNorm statistics of every programmed chip from N training images "
                        "before testing it (default: %(default)s: off)")
    p.add_argument("--chip-tune", type=int, default=0, metavar="STEPS",
                   help="tune a tiny shared 1x1-convolution block on every chip for STEPS optimizer steps (backbone "
                        "frozen), then write it with verification (TSB; default: %(default)s: off)")
    p.add_argument("--chip-tune-taps", nargs="+", default=None, metavar="MODULE",
                   help="modules after which the block is inserted, outputs of one channel count (default: the "
                        "model's own, e.g. features.1 for lenet5); with --chip-tune only")
    p.add_argument("--chip-tune-lr", type=float, default=None, metavar="LR",
                   help="Adam learning rate of the block (default: 0.01); with --chip-tune only")
    p.add_argument("--chip-tune-batch", type=int, default=None, metavar="N",
                   help="training images per tuning step (default: 64); with --chip-tune only")


def _add_execution_arguments(p: argparse.ArgumentParser) -> None:
    """How the evaluation runs: test images, batching, vmap, precision, compilation, layout, data and device."""
    p.add_argument("--test-subset", type=int, default=None, metavar="N",
                   help="evaluate on N test images (default: the full test set, whatever the run trained with; N at "
                        "least the test set's size is the full test set, with a note)")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="at most this many test images per forward (default: %(default)s)")
    p.add_argument("--chips-per-pass", default="auto", type=chips_per_pass,
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


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """The result files' name, the label in reports, overwriting and progress bars."""
    p.add_argument("--name", default="results",
                   help="base name of the result files, to keep several evaluations of one run, e.g. results_rram4 "
                        "(default: %(default)s)")
    p.add_argument("--label", default=None,
                   help="name of this result in reports (default: the method variant, e.g. 'ovf beta=0')")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier result of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _cmd_evaluate(args) -> None:
    from neft.chip.chip_presets import replace_given
    from neft.deployment.fixes import TUNING_SETTINGS, check_tuning_used
    from neft.evaluation import EvalConfig
    from neft.runs.evaluate import check_outputs, evaluate_run, finished_points, sweep_names

    tuning = {name: getattr(args, name) for name in TUNING_SETTINGS if getattr(args, name) is not None}
    settings = EvalConfig(
        sigmas=args.sigmas, runs=args.runs, seed=args.seed, device_model=args.device_model,
        test_subset=args.test_subset, batch_size=args.batch_size, chips_per_pass=args.chips_per_pass,
        ci_target=args.ci_target, precision=args.precision, memory_format=args.memory_format,
        compile={"on": True, "off": False}.get(args.compile, args.compile),
        verify_select=args.verify_select, verified_sigma=args.verified_sigma, read_sigma=args.read_sigma,
        recalibrate_bn=args.recalibrate_bn, chip_tune=args.chip_tune, **tuning, **chip_settings(args),
        **circuit_settings(args, given=True),
    )
    check_tuning_used(settings, tuning)  # a tuning flag without --chip-tune, even at its default value
    # a sweep writes one result file per point ({name}_wv{fraction}_t{time}): every point and file checked first
    points = sweep_names(args.name, write_verify=args.write_verify, drift_time=args.drift_times)
    sweep = {name: replace_given(settings, **point).check() for name, point in points}
    # an interrupted sweep resumes: the points it finished with these settings are kept, not recomputed
    finished = finished_points(args.run_dir, sweep, args.label) if len(sweep) > 1 and not args.overwrite else []
    check_outputs(args.run_dir, [name for name in sweep if name not in finished], args.overwrite)
    if not args.quiet and distributed.is_main():
        print(_chips_to_come([sweep[name] for name in sweep if name not in finished]), file=sys.stderr)
    for name, config in sweep.items():
        if name in finished:
            if distributed.is_main():
                print(f"kept {Path(args.run_dir) / (name + '.json')}: finished earlier with these settings")
            continue
        results = evaluate_run(args.run_dir, config, data_dir=args.data_dir, device=args.device, name=name,
                               label=args.label, overwrite=args.overwrite, progress=not args.quiet)
        if distributed.is_main():
            _print_results(results, Path(args.run_dir) / (name + ".json"))


def _chips_to_come(configs: list) -> str:
    """The cost of an evaluation said before its work: the chips it programs and tests (result files x sigmas x
    runs; a run's own sigmas are two, 0 and its training sigma) and when the time estimate follows."""
    sigmas = [len(config.sigmas) if config.sigmas is not None else 2 for config in configs]
    total = sum(count * config.runs for count, config in zip(sigmas, configs))
    files = f"{len(configs)} result files x " if len(configs) > 1 else ""
    which = (f"{sigmas[0]} sigma{'s' * (sigmas[0] != 1)}" if configs[0].sigmas is not None
             else "2 sigmas (0 and the run's training sigma)")
    limit = ", at most: --ci-target stops a sigma early" if configs[0].ci_target is not None else ""
    return (f"neft evaluate: {total:,} chips to program and test ({files}{which} x {configs[0].runs:,} runs"
            f"{limit}); the time per chip and an estimate follow the first noisy sigma (fewer chips: --runs)")


def _print_results(results: dict, path: Path) -> None:
    """One line per sigma, the file written with how it was computed, and what the precision check measured."""
    for point in results["per_sigma"]:
        acc = point["accuracy"]
        print(f"sigma {point['sigma']:.3f}: {acc['mean']:.2f} +- {acc['ci95']:.2f} % (95 % CI, {point['runs']} "
              f"runs), std {acc['std']:.2f}, min {acc['min']:.2f}, EKL {point['ekl_x1e2']:.3f}e-2, "
              f"confidence {point['confidence']:.3f}")
    execution = results["per_sigma"][-1]["execution"]
    print(f"wrote {path} ({results['seconds']:.1f} s; "
          f"{execution['chips_per_pass']} chip(s) per pass, {execution['memory_format']}"
          f"{', compiled' if execution['compiled'] else ''}, {results['precision']})")
    if results["precision_check"]:  # precision auto on a device with native bf16: what the check measured
        print(f"precision auto: {results['precision_check']['reason']}")

