"""``neft cost``: energy, latency and area per inference, layer by layer, and the programming cost per chip, of a run
directory's results or of a zoo model on a chip given by flags (docs/method.md, 'What a chip costs')."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

from neft.cli.chip_arguments import add_circuit_arguments, circuit_settings, given_flags
from neft.cli.help_texts import MODEL_HELP

_DESCRIPTION = (
    "Estimate what a chip costs: per mapped layer the crossbar read energy from the programmed conductances, the "
    "DAC and ADC energy (Walden figure of merit from Murmann's ADC survey), shift-and-add and accumulation, the "
    "digital layers (Horowitz, 45 nm), latency from tile parallelism and columns per ADC, area from cells, tiles "
    "and converters; and per chip the seconds and joules of programming, write-verify, BatchNorm recalibration and "
    "the tuned block. With RUN_DIR: one table per results file there (its chip and its per-chip fixes), written as "
    "RUN_DIR/cost/NAME_cost.json and NAME_cost.csv; --attach also records the totals in each results file (the "
    "'cost' field `neft report` plots). With --model: the zoo model at initialisation on the chip of the flags. "
    "Every constant is a technology key (--technology FILE, --set KEY=VALUE; docs/method.md lists them with "
    "their sources).")


def add_cost_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``cost`` subparser and its flags."""
    p = subparsers.add_parser("cost", help="energy, latency, area per inference and programming cost per chip",
                              description=_DESCRIPTION)
    p.add_argument("run_dir", nargs="?", default=None, help="run directory (its checkpoint and results files)")
    p.add_argument("--results", default=None, metavar="NAME",
                   help="cost only the results file NAME.json of RUN_DIR (default: every results file there)")
    p.add_argument("--attach", action="store_true",
                   help="record the totals in each results file's 'cost' field (for `neft report`)")
    p.add_argument("--model", default=None, help=f"without RUN_DIR: {MODEL_HELP}")
    _add_model_arguments(p)
    p.add_argument("--technology", default=None, metavar="FILE",
                   help="technology file (TOML or JSON, {key: value} or a [technology] table)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override technology keys, e.g. --set adc_fom=5e-15 columns_per_adc=4 (repeatable: "
                        "every --set adds its keys)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the tables go (default: RUN_DIR/cost, or the current folder with --model)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing cost tables (JSON and CSV) and, with --attach, a cost recorded in a "
                        "results file")
    p.set_defaults(func=_cmd_cost)


def _add_model_arguments(p) -> None:
    """The flags of ``--model`` alone: the network's shape, the device model, the per-chip fixes and the circuit
    (a run directory's results files carry their own)."""
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default: %(default)s)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default: %(default)s)")
    p.add_argument("--in-channels", type=int, default=3, help="image channels (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=32, help="image side in pixels (default: %(default)s)")
    p.add_argument("--device-model", default="RRAM1",
                   help="device preset or file: its weight_bits and device_bits (default: %(default)s)")
    p.add_argument("--write-verify", type=float, default=0.0, metavar="P",
                   help="with --model: fraction of the weights write-verified per chip (default: %(default)s)")
    p.add_argument("--recalibrate-bn", type=int, default=0, metavar="N",
                   help="with --model: BatchNorm recalibration images per chip (default: %(default)s)")
    add_circuit_arguments(p)


def _overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs as technology overrides; VALUE is read as JSON (a number, ``null``)."""
    from neft.common.errors import SettingError

    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        try:
            values[key] = json.loads(text) if sep else None
        except json.JSONDecodeError:
            values[key] = text
        if not sep:
            raise SettingError("set", f"--set takes KEY=VALUE pairs (e.g. adc_fom=5e-15), got {pair!r}")
    return values


def _results_files(run_dir: Path, name: str | None) -> dict[Path, dict]:
    """The results files of ``run_dir`` (JSON files with ``per_sigma`` and ``evaluation``), or ``NAME.json``, each
    with its contents."""
    name = name.removesuffix(".json") if name is not None else None
    if name is not None and (Path(name).name != name or name in ("", ".", "..")):
        raise ValueError(f"--results takes the NAME of a results file in {run_dir} (NAME.json), not a path: got "
                         f"{name!r}")
    paths = [run_dir / f"{name}.json"] if name is not None else sorted(run_dir.glob("*.json"))
    found = {path: result for path in paths if path.is_file() and (result := _results(path)) is not None}
    if not found and name is not None:
        raise FileNotFoundError(f"no results file {paths[0]}: run `neft evaluate {run_dir} --name {name}` first")
    if not found:
        raise FileNotFoundError(f"{run_dir} holds no results file: run `neft evaluate {run_dir}` first, or cost a "
                                "model with --model")
    return found


def _results(path: Path) -> dict | None:
    """The results file of `neft evaluate` that ``path`` holds (a JSON object with ``per_sigma`` and
    ``evaluation``), or None."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and "per_sigma" in data and "evaluation" in data else None


def _chip_of(evaluation: dict, device_model: dict):
    """The chip a results file was evaluated on."""
    from neft.chip.settings import ChipSettings

    return ChipSettings.of(SimpleNamespace(**evaluation), base=device_model)


def _cmd_cost(args) -> None:
    from neft.common.errors import SettingError
    from neft.cost import technology

    tech = technology(args.technology, **_overrides(args.set))
    if (args.run_dir is None) == (args.model is None):
        raise SettingError("model", "give a run directory or --model (one of them), e.g. `neft cost runs/x` or "
                                    "`neft cost --model vgg8 --tile-rows 128 --adc-bits 6`")
    if args.model is not None and (args.attach or args.results is not None):
        flag = "--attach" if args.attach else "--results"
        raise SettingError(flag.removeprefix("--"), f"{flag} applies to a run directory's results files, not to "
                                                    "--model: `neft cost RUN_DIR --results NAME --attach`")
    if args.run_dir is not None:
        given = sorted(given_flags(args, _add_model_arguments))
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise SettingError(given[0], f"{flag} applies with --model only: each results file of a run directory "
                                         "is costed on the chip it was evaluated on; evaluate the run on the chip "
                                         f"you want first (e.g. `neft evaluate {args.run_dir} --adc-bits 4 --name "
                                         f"adc4`), then `neft cost {args.run_dir} --results adc4`")
        _cost_run(args, tech)
    else:
        _cost_model(args, tech)


def _cost_run(args, tech) -> None:
    """One table per results file of ``args.run_dir``."""
    from neft.store.checkpoint import load_checkpoint

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist (or is not a folder)")
    files = _results_files(run_dir, args.results)
    out = Path(args.out) if args.out else run_dir / "cost"
    _check_free(out, [path.stem for path in files], args.overwrite)
    costed = [path for path, result in files.items() if "cost" in result]
    if args.attach and costed and not args.overwrite:
        raise FileExistsError(f"{costed[0]} already records a cost; pass --overwrite to replace it")
    model, meta = load_checkpoint(run_dir)
    spec, stats = meta["model"], meta.get("dataset_stats") or {}
    shape = (spec["in_channels"], stats.get("image_size", 32), stats.get("image_size", 32))
    tables = {path: _file_cost(path, result, model, tech, shape) for path, result in files.items()}  # all, first
    out.mkdir(parents=True, exist_ok=True)
    for path, (table, chip) in tables.items():
        result = files[path]
        table.write(out / f"{path.stem}_cost.json", out / f"{path.stem}_cost.csv")
        _print(table, f"{path.name}{chip.circuit.label()}")
        if args.attach:
            result["cost"] = table.summary()
            path.write_text(json.dumps(result, indent=2) + "\n")


def _file_cost(path: Path, result: dict, model, tech, shape: tuple[int, ...]):
    """``(cost table, chip)`` of one results file; a damaged file (a chip or counts that cannot be read) is named."""
    from neft.cost import chip_cost
    from neft.cost.programming import deployment_counts

    damaged = f"results file {path} is damaged"
    try:
        evaluation = result["evaluation"]
        chip = _chip_of(evaluation, result.get("device_model") or evaluation["device_model"])
        deployment = result.get("deployment_cost")
        if deployment is not None:
            deployment_counts(deployment)
    except ValueError as error:  # a chip setting out of range (the file's, not a flag's), a bad count
        raise ValueError(f"{damaged}: {error}") from None
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{damaged} ({type(error).__name__}: {error}); evaluate the run again to rewrite it") \
            from None
    return chip_cost(model, chip, tech, shape, deployment), chip


def _cost_model(args, tech) -> None:
    """One table for ``args.model`` at initialisation on the chip of the flags."""
    import torch

    from neft import models
    from neft.common.errors import SettingError, check_count, check_number
    from neft.cost import chip_cost
    from neft.deployment.recalibration import batchnorm_layers
    from neft.evaluation import EvalConfig

    check_number("write_verify", args.write_verify, "a fraction in [0, 1]", lambda v: 0 <= v <= 1)
    check_count("recalibrate_bn", args.recalibrate_bn, 0, "images per chip")
    out = Path(args.out or ".")
    _check_free(out, [args.model.replace(":", "_").replace("/", "_")], args.overwrite)
    torch.manual_seed(0)
    model = models.create(args.model, args.classes, args.in_channels, args.width, "torch")
    if args.recalibrate_bn and not batchnorm_layers(model):
        raise SettingError("recalibrate_bn", f"{args.model} has no BatchNorm layer to recalibrate; drop "
                                             "--recalibrate-bn")
    # checked as evaluate checks it: a chip preset's circuit, the flags written on top of it
    chip = EvalConfig(device_model=args.device_model, **circuit_settings(args, given=True)).check().chip()
    mapped = sum(p.numel() for p in _mapped(model))
    deployment = {"mapped_weights": mapped,
                  "write_verify": {"weights_verified": round(args.write_verify * mapped)},
                  "recalibrate_bn": {"images": args.recalibrate_bn}}
    table = chip_cost(model, chip, tech, (args.in_channels, args.image_size, args.image_size), deployment)
    stem = args.model.replace(":", "_").replace("/", "_")
    out.mkdir(parents=True, exist_ok=True)
    table.write(out / f"{stem}_cost.json", out / f"{stem}_cost.csv")
    _print(table, f"{args.model}{chip.circuit.label()}")


def _mapped(model):
    """The crossbar-mapped weights of ``model``."""
    from neft.chip.crossbar import Crossbar

    return Crossbar(model).weights().values()


def _check_free(out: Path, stems: list[str], overwrite: bool) -> None:
    """Refuse to replace an existing table without ``--overwrite``, or to write into a path that is a file,
    before any work (a missing folder is made when the table is written)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder: choose a folder")
    taken = [out / f"{stem}_cost.{kind}" for stem in stems for kind in ("json", "csv")
             if (out / f"{stem}_cost.{kind}").exists()]
    if taken and not overwrite:
        raise FileExistsError(f"{taken[0]} exists; pass --overwrite to replace it")


def _print(table, title: str) -> None:
    """The per-layer table and the totals on stdout."""
    print(f"{title}  ({table.to_dict()['node']})")
    print(f"{'layer':<28} {'kind':<14} {'tiles':>6} {'ADCs':>6} {'energy nJ':>11} {'latency us':>11} "
          f"{'area mm2':>10}")
    for layer in table.layers:
        print(f"{layer.name:<28} {layer.kind:<14} {layer.tiles:>6} {layer.adcs:>6} {layer.total_energy * 1e9:>11.3f} "
              f"{layer.latency * 1e6:>11.3f} {layer.total_area * 1e6:>10.4f}")
    total = table.totals()
    print(f"{'total':<28} {'':<14} {total['tiles']:>6} {total['adcs']:>6} {total['energy_J'] * 1e9:>11.3f} "
          f"{total['latency_s'] * 1e6:>11.3f} {total['area_m2'] * 1e6:>10.4f}")
    print("per chip: " + ", ".join(f"{term} {cost['seconds']:.4g} s {cost['joules']:.4g} J"
                                   for term, cost in table.programming.items()))
