"""How long a cost table takes (VGG8 width 1: under 1 s), and the cost model against DNN+NeuroSim V1.4's published
VGG8 figures (docs/method.md, 'What a chip costs'; benchmarks/README.md, 'What a chip costs').

The timing is the median wall and CPU time of ``--repeats`` calls of :func:`neft.cost.chip_cost` in one process,
after one call that pays torch's first-use costs (printed too). The comparison builds NeuroSim's VGG8 (its
``NetWork_VGG8.csv``: six 3x3 convolutions of 128, 128, 256, 256, 512, 512 channels, three 2x2 max pools,
8192-1024-10) and costs it at the configuration of the NeuroSim V1.4 manual's Table VII first row (RRAM, 22 nm,
on/off 17, 4-bit ADC, 128 x 128 sub-arrays, 1 bit per cell, 8-bit weights and activations): area 381.90 mm^2,
6.25 TOPS, 11.25 TOPS/W.

    python benchmarks/cost_table.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from neft import models
from neft.chip.circuit_settings import CircuitSettings
from neft.chip.device_model import DeviceModel
from neft.chip.settings import ChipSettings
from neft.cost import chip_cost, technology

NEUROSIM_TABLE_VII = {"area_mm2": 381.90, "TOPS": 6.25, "TOPS_per_W": 11.25}  # RRAM, 22 nm, 4-bit ADC, parallel read 32
AT_22NM = Path(__file__).resolve().parents[1] / "configs" / "technology" / "22nm.toml"  # the 22 nm keys, sourced


def neurosim_vgg8() -> nn.Module:
    """NeuroSim's VGG8 for CIFAR-10 (its ``NetWork_VGG8.csv``), bias-free, ReLU after every layer but the last."""
    layers, channels = [], 3
    for out, pool in ((128, False), (128, True), (256, False), (256, True), (512, False), (512, True)):
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if pool else []
        channels = out
    layers += [nn.Flatten(), nn.Linear(8192, 1024, bias=False), nn.ReLU(), nn.Linear(1024, 10, bias=False)]
    return nn.Sequential(*layers)


def timing(repeats: int) -> None:
    """Seconds per cost table of VGG8 width 1 (128-row tiles, 8-bit DACs, 6-bit ADCs)."""
    model = models.create("vgg8", 10, 3, 1.0, init="torch")
    chip = ChipSettings(DeviceModel(), CircuitSettings(tile_rows=128, dac_bits=8, adc_bits=6).check())
    tech = technology()
    start = time.perf_counter()
    chip_cost(model, chip, tech, (3, 32, 32))
    first = time.perf_counter() - start
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        chip_cost(model, chip, tech, (3, 32, 32))
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(f"VGG8 width 1 cost table: first call {first:.3f} s, then median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f} s) over {repeats}, CPU time median {statistics.median(cpu):.3f} s; torch threads "
          f"{torch.get_num_threads()}")


def against_neurosim() -> None:
    """NeuroSim's VGG8 at Table VII's configuration, ours against its figures."""
    torch.manual_seed(0)
    model = neurosim_vgg8()
    chip = ChipSettings(DeviceModel(weight_bits=8, device_bits=1),
                        CircuitSettings(tile_rows=128, dac_bits=8, adc_bits=4).check())
    table = chip_cost(model, chip, technology(AT_22NM), (3, 32, 32))
    total = table.totals()
    ops = 2 * total["macs"]
    ours = {"area_mm2": total["area_m2"] * 1e6, "TOPS": ops / total["latency_s"] / 1e12,
            "TOPS_per_W": ops / total["energy_J"] / 1e12}
    print(f"NeuroSim VGG8: {total['macs'] / 1e6:.1f} M MACs per image, {total['tiles']} tiles of 128 x 128, "
          f"{total['adcs']} ADCs")
    print(f"{'figure':<12} {'neft':>10} {'NeuroSim':>10} {'ratio':>7}")
    for key, value in ours.items():
        print(f"{key:<12} {value:>10.3f} {NEUROSIM_TABLE_VII[key]:>10.3f} {value / NEUROSIM_TABLE_VII[key]:>7.2f}")
    energy = {term: total[f"energy_{term}_J"] for term in ("array", "dac", "adc", "shift_add", "accumulate",
                                                           "digital")}
    print("energy per image (uJ): " + ", ".join(f"{term} {value * 1e6:.2f}" for term, value in energy.items())
          + f"; total {total['energy_J'] * 1e6:.2f}; NeuroSim {ops / 11.25e12 * 1e6:.2f}")
    print("area (mm^2): " + ", ".join(f"{term} {total[f'area_{term}_m2'] * 1e6:.2f}" for term in ("array", "adc",
                                                                                                  "dac")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (default: %(default)s)")
    args = parser.parse_args()
    timing(args.repeats)
    against_neurosim()


if __name__ == "__main__":
    main()
