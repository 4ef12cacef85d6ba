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
    from neft.chip.chip_presets import CHIP_PRESET_SOURCES
    from neft.chip.presets import PRESET_SOURCES, PRESETS

    print(f"{'preset':<11} {'weight bits':>11} {'device bits':>11} {'s':>4} {'band':>12} {'bit factor':>10} "
          f"{'edge x':>7} {'middle x':>8}  chip (quantized mapping, stuck devices, drift)")
    for name, model in PRESETS.items():
        edge, middle = model.multipliers
        chip = "-"
        if model.quantize:
            chip = _chip(model)
        print(f"{name:<11} {model.weight_bits:>11} {model.device_bits:>11} {model.state_factor:>4g} "
              f"{str(model.band):>12} {model.bit_factor:>10.5f} {edge:>7.3f} {middle:>8.3f}  {chip}")
    print("\nstd(w) = sigma * bit factor * max|W| * (edge x or middle x); 'middle' = intermediate states, "
          "band < |w|/max|W| (docs/method.md, 'Device variation model'). Own models: --device-model FILE.toml")
    print("\nSources:")
    for name, source in PRESET_SOURCES.items():
        print(f"  {name}: {source}")
    print("\nChip presets (a device preset read through a periphery; --device-model NAME sets every circuit flag you "
          "do not give; docs/method.md, 'The periphery'):")
    for name, source in CHIP_PRESET_SOURCES.items():
        print(f"  {name}: {source}")


def _chip(model) -> str:
    """One line of a realistic preset's chip: conductance range, programming law, stuck rates, drift, 1/f read noise
    and compensation (their sources: the preset's line under 'Sources')."""
    from neft.chip.device_laws import g_min

    law = ("".join((f"{c:g}" if not i else f" {'-' if c < 0 else '+'} {abs(c):g} x" + (f"^{i}" if i > 1 else ""))
                   for i, c in enumerate(model.prog_noise_coeffs)) if model.prog_noise_coeffs else None)
    if model.drifts:
        mean = "mu(g)" if model.drift_nu_mean_law else f"{model.drift_nu_mean:g}"
        std = "sigma(g)" if model.drift_nu_std_law else f"{model.drift_nu_std:g}"
        drift = f"nu {'|' if model.drift_nu_abs else ''}N({mean}, {std}){'|' if model.drift_nu_abs else ''}"
    parts = [f"quantized, g {g_min(model):g}-{model.g_max:g} uS",
             f"prog std {law} uS (x = g/g_max)" if law else "",
             f"stuck off {100 * model.stuck_off:g} %, on {100 * model.stuck_on:g} %"
             if model.stuck_off or model.stuck_on else "",
             f"drift {drift} from t0 {model.drift_t0:g} s" if model.drifts else "",
             f"1/f read noise Q_s {model.read_noise_1f[0]:g}/x^{model.read_noise_1f[1]:g}, t_read {model.t_read:g} s"
             + (" per read" if model.read_noise_1f_per_read else "") if model.read_noise_1f else "",
             f"compensation ({model.drift_compensation_input})" if model.drift_compensation else "",
             "no clip at g_max" if not model.clip_g_max else "",
             "drift of the re-split weight (aihwkit 1.2)" if model.drift_of == "resplit" else ""]
    return "; ".join(part for part in parts if part)
