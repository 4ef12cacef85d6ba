"""``neft devices``: the NVM device presets, their std multipliers and sources (docs/method.md, 'Device variation
model')."""

from __future__ import annotations

import argparse


def add_devices_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``devices`` subparser (no flags)."""
    p = subparsers.add_parser("devices", help="list the NVM device presets and their std multipliers",
                              description="List the NVM device presets: weight bits, device bits, state factor, the "
                                          "band of intermediate states and the std multipliers of edge and "
                                          "intermediate weights (docs/method.md, 'Device variation model').")
    p.set_defaults(func=_cmd_devices)


def _cmd_devices(args) -> None:
    from neft.chip.presets import PRESET_SOURCES, PRESETS

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
