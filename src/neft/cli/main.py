"""The ``neft`` command line: devices, layers, train, evaluate, cost, report, demo, reproduce.

Every command writes files (JSON/CSV/PNG) into run directories; bad input ends in one ``neft: error: ...`` line
and exit code 2, and nothing existing is overwritten without ``--overwrite``. Each command's flags and handler live
in its own module (neft.cli.train, neft.cli.evaluate, ...); this module assembles the parser and runs a command.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from pathlib import Path

from neft.cli.chip_arguments import NEGATIVE_VALUE
from neft.cli.cost import add_cost_command
from neft.cli.demo import add_demo_command
from neft.cli.devices import add_devices_command
from neft.cli.evaluate import add_evaluate_command
from neft.cli.import_run import add_import_command
from neft.cli.layers import add_layers_command
from neft.cli.rcg_search import add_rcg_search_command
from neft.cli.report import add_report_command
from neft.cli.reproduce import add_reproduce_command
from neft.cli.train import add_train_command
from neft.common import distributed
from neft.common.compute import keep_freed_memory
from neft.common.version import __version__

# the commands in the order `neft --help` lists them
COMMANDS = (add_devices_command, add_layers_command, add_train_command, add_evaluate_command, add_import_command,
            add_rcg_search_command, add_cost_command, add_report_command, add_demo_command, add_reproduce_command)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors (an unknown flag, a value of the wrong type) are one line, as every other
    bad input is, pointing at ``--help`` instead of printing the usage; which reads a negative number in
    scientific notation (``--wire-resistance -1e-4``) as a value, not as a flag, so that its range check answers;
    and which takes flags whole, not abbreviated (``--out-n`` for ``--out-noise`` is refused: which flags were
    written decides what a chip preset leaves alone, :func:`neft.cli.chip_arguments.given_flags`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})
        self._negative_number_matcher = NEGATIVE_VALUE

    def error(self, message: str):
        self.exit(2, f"neft: error: {message} (`{self.prog} --help` lists the flags)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neft`` command (also used to render ``--help``)."""
    parser = _Parser(
        prog="neft",
        description="Negative Feedback Training (OVF, IRS) and Monte Carlo robustness evaluation of DNNs on "
                    "NVM compute-in-memory accelerators with device-to-device variation.",
    )
    parser.add_argument("--version", action="version", version=f"neft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(sub)
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
        print("neft: interrupted; rerun the same command with --resume (train) or as is (evaluate, demo, reproduce)",
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
    --drift-times: ...``; the library names settings as the Python API does), the chip preset when no flag gave
    it (``the chip preset aihwkit-inference sets out_noise = 0.06: ... (give --out-noise to change it)``; a
    message the library already wrote so, :func:`neft.chip.chip_presets.naming_preset`, gets the flag in its hint),
    or the device-model file (``device model file chip.toml: ...``)."""
    from neft.chip.chip_presets import chip_preset
    from neft.chip.device_model import DeviceModel
    from neft.cli.chip_arguments import add_circuit_arguments, given_flags

    if not setting:
        return message
    flag = setting + "s" if not hasattr(args, setting) and hasattr(args, setting + "s") else setting  # --drift-times
    if message.startswith("the chip preset"):  # the library named the preset already: the flag in its hint
        return message.replace(f"(set {setting} to change it)", f"(give --{flag.replace('_', '-')} to change it)")
    given = getattr(args, flag, None)
    source = getattr(args, "device_model", None)
    if (given is None or given == [None]) and setting in {field.name for field in dataclasses.fields(DeviceModel)} \
            and isinstance(source, str) and Path(source).is_file():  # no flag set it ([None]: no sweep): the file did
        return message if message.startswith("device model file") else f"device model file {source}: {message}"
    preset = chip_preset(getattr(args, "device_model", None))
    if preset is not None and setting in preset[1] and setting not in given_flags(args, add_circuit_arguments):
        return (f"the chip preset {args.device_model} sets {setting} = {preset[1][setting]!r}: {message} (give "
                f"--{flag.replace('_', '-')} to change it)")
    if hasattr(args, flag):
        return f"argument --{flag.replace('_', '-')}: {message}"
    return message


if __name__ == "__main__":
    sys.exit(main())
