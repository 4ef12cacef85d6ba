"""The chip and crossbar-circuit flags shared by ``neft train``, ``neft evaluate`` (and ``neft rcg-search``'s
device model): how each is added to a parser, and how the given values become settings (docs/method.md, 'The
realistic chip' and 'The crossbar circuit')."""

from __future__ import annotations

import argparse
import re

from neft.cli.value_types import times

# an argument that starts like a negative number ("-1e-4", "-0.1,0.2") is a value, not a flag (Python 3.13's rule)
NEGATIVE_VALUE = re.compile(r"^-\.?\d")
_UNSET = object()  # the default of every flag when finding the flags written on the command line


def add_circuit_arguments(parser: argparse.ArgumentParser) -> None:
    """The crossbar circuit's flags (neft.chip.circuit_settings.CircuitSettings; docs/method.md,
    'The crossbar circuit')."""
    from neft.chip.circuit_settings import ADC_MODES, TILE_SPLITS

    group = parser.add_argument_group("crossbar circuit (docs/method.md, 'The crossbar circuit'; all off by default)")
    group.add_argument("--tile-rows", type=int, default=None, metavar="N",
                       help="crossbar rows per tile: each mapped layer's input is split into tiles of N rows, each "
                            "with its own partial sums (default: one tile per layer)")
    group.add_argument("--tile-split", default="fill", choices=list(TILE_SPLITS),
                       help="fill: tiles of --tile-rows rows and the rest (576 -> 512 + 64); equal: as few tiles of "
                            "equal sizes (576 -> 288 + 288, aihwkit's max_input_size split; default: %(default)s)")
    group.add_argument("--dac-bits", type=int, default=None, metavar="B",
                       help="input DAC bits of every mapped layer (2-32), range calibrated on 256 training images "
                            "drawn at random (seeded by --seed)")
    group.add_argument("--adc-bits", type=int, default=None, metavar="B",
                       help="ADC bits of every tile's partial sums (2-32), range calibrated per layer and tile on "
                            "256 training images drawn at random (seeded by --seed)")
    group.add_argument("--adc-range", type=float, default=100.0, metavar="P",
                       help="percentile of the calibration magnitudes that sets the DAC/ADC full scale "
                            "(default: %(default)s = the maximum)")
    group.add_argument("--adc-mode", default="analog", choices=list(ADC_MODES),
                       help="analog: one ADC reads each column's analog sum; sliced: one ADC per bit slice of the "
                            "weight_bits/device_bits mapping, shifted and added (default: %(default)s)")
    group.add_argument("--wire-resistance", type=float, default=0.0, metavar="R",
                       help="IR drop: wire resistance between neighbouring cells over the device's on-state "
                            "resistance, e.g. 1e-4 (CrossSim's Rp/Rmin; needs --tile-rows; default: 0, ideal wires)")
    for name, meaning in (("offset", "offset in LSB"), ("gain", "relative gain error"),
                          ("inl", "mid-scale integral nonlinearity in LSB"),
                          ("mismatch", "SAR capacitor mismatch, relative to a unit capacitor")):
        group.add_argument(f"--adc-{name}", type=float, default=0.0, metavar="S",
                           help=f"std of each ADC's {meaning}, drawn per ADC and chip from the chip's seed (needs "
                                "--adc-bits; default: 0, ideal)")
    add_periphery_arguments(group)


def add_periphery_arguments(group) -> None:
    """The periphery's flags (neft.chip.periphery_settings; docs/method.md, 'The periphery'), aihwkit's IOParameters
    and weight scaling by name."""
    from neft.chip.periphery_settings import (
        BOUND_MANAGEMENTS,
        COMPENSATION_PLACEMENTS,
        COMPENSATION_READOUTS,
        CONVERTER_CODES,
        INPUT_MANAGEMENTS,
        TILE_MAPPINGS,
        WEIGHT_SCALINGS,
    )

    group.add_argument("--out-noise", type=float, default=0.0, metavar="S",
                       help="output noise per read: Gaussian std on every tile output before the ADC, in units of "
                            "a full-scale row output (aihwkit out_noise, 0.06 in its IOParameters; default: 0)")
    group.add_argument("--input-management", default="none", choices=list(INPUT_MANAGEMENTS),
                       help="abs_max: scale each input vector by its max |x| before the DAC and back after the ADC "
                            "(aihwkit NoiseManagementType.ABS_MAX); none: the calibrated static DAC range "
                            "(default: %(default)s)")
    group.add_argument("--bound-management", default="none", choices=list(BOUND_MANAGEMENTS),
                       help="iterative: re-read every input vector whose outputs saturate with its input halved, "
                            "up to aihwkit's limits (BoundManagementType.ITERATIVE; default: %(default)s)")
    group.add_argument("--out-bound", type=float, default=None, metavar="B",
                       help="fixed output full scale in units of a full-scale row output (aihwkit out_bound, 12 in "
                            "its IOParameters); default: the ADC range calibrated by --adc-range")
    group.add_argument("--weight-scaling", default="layer", choices=list(WEIGHT_SCALINGS),
                       help="the weight unit of the conductance range and of --out-noise/--out-bound: the layer's "
                            "max |W|, each crossbar column's (aihwkit weight_scaling_columnwise), or off (weights "
                            "in their own units, aihwkit's default weight_scaling_omega 0; default: %(default)s)")
    group.add_argument("--converter-codes", default="twos_complement", choices=list(CONVERTER_CODES),
                       help="signed DAC/ADC codes: two's complement (-2^(B-1)..2^(B-1)-1) or symmetric "
                            "sign-magnitude (+-(2^(B-1)-1), as aihwkit and CrossSim; default: %(default)s). With "
                            "--input-management abs_max, two's complement reads each vector's largest positive "
                            "input one step low (its code 2^(B-1) is clipped); sign-magnitude reaches it")
    group.add_argument("--drift-compensation-at", default="weights", choices=list(COMPENSATION_PLACEMENTS),
                       help="where global drift compensation acts: on the weights, before the ADC, or on the "
                            "digitised outputs, as aihwkit (needs the device model's drift compensation; default: "
                            "%(default)s)")
    group.add_argument("--tile-mapping", default="layer", choices=list(TILE_MAPPINGS),
                       help="tile: every tile programmed relative to its own max |W|, with its own drift "
                            "compensation factor (aihwkit's tiles); layer: one reference and factor per layer "
                            "(default: %(default)s)")
    group.add_argument("--compensation-readout", default="weights", choices=list(COMPENSATION_READOUTS),
                       help="periphery: the drift compensation readout read through the noisy periphery (output "
                            "noise, converters), as aihwkit's GlobalDriftCompensation; weights: on the chip's "
                            "weights, exactly (default: %(default)s)")


def circuit_settings(args, given: bool = False) -> dict:
    """The circuit flags as EvalConfig/TrainConfig keywords; ``given``: only the flags written on the command line,
    so that the config's defaults, or a chip preset's settings (docs/method.md, 'The periphery'), fill the others
    and a flag given at its default value (``--out-noise 0``) still wins over a preset."""
    from neft.chip.circuit_settings import FIELDS

    written = given_flags(args, add_circuit_arguments) if given else FIELDS
    return {name: getattr(args, name) for name in FIELDS if name in written}


def given_flags(args, add_arguments) -> set[str]:
    """The destinations of the flags among ``add_arguments(parser)``'s that are written on the command line
    (``args.argv`` after ``args.command``), at any value, the default included; without a command line in
    ``args`` (parsed outside :func:`neft.cli.main`), those whose value differs from the default."""
    if not hasattr(args, "argv") or not hasattr(args, "command"):
        defaults = argparse.ArgumentParser(add_help=False)
        add_arguments(defaults)
        return {dest for dest, value in vars(defaults.parse_args([])).items() if getattr(args, dest, value) != value}
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # --out is no abbreviation of --out-noise
    parser._negative_number_matcher = NEGATIVE_VALUE  # read as the command line was
    add_arguments(parser)
    parser.set_defaults(**{dest: _UNSET for dest in vars(args)})
    written, _ = parser.parse_known_args(args.argv[args.argv.index(args.command) + 1:])
    return {dest for dest, value in vars(written).items() if value is not _UNSET}


def add_chip_arguments(parser: argparse.ArgumentParser, training: bool) -> None:
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
        parser.add_argument("--drift-times", type=times, default=[None], metavar="T",
                            help="read the chips T seconds after programming; a comma list such as "
                                 "1,3600,86400,2.6e6,3.15e7 writes NAME_tT.json per time (default: the device "
                                 "model's, t0: no drift)")


def chip_settings(args) -> dict:
    """The chip flags given on the command line, by setting name."""
    names = ("quantize", "stuck_off", "stuck_on", "drift_nu_mean", "drift_nu_std", "drift_compensation", "drift_time")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def training_device_model(args):
    """``--device-model`` with the chip flags applied: the name as given, or a dict for config.json."""
    from neft.chip import devices

    if not chip_settings(args):
        return args.device_model
    return devices.get(args.device_model).with_chip(**chip_settings(args)).to_dict()
