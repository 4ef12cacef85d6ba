"""How long a cost table takes (VGG8 width 1: under 1 s), and the cost model against DNN+NeuroSim V1.4 on VGG8
(docs/method.md, 'What a chip costs'; benchmarks/README.md, 'Against DNN+NeuroSim').

The timing is the median wall and CPU time of ``--repeats`` calls of :func:`neft.cost.chip_cost` in one process,
after one call that pays torch's first-use costs (printed too). The comparison builds NeuroSim's VGG8 (its
``NetWork_VGG8.csv``: six 3x3 convolutions of 128, 128, 256, 256, 512, 512 channels, three 2x2 max pools,
8192-1024-10) and costs it at the configuration of the NeuroSim V1.4 manual's Table VII first row (RRAM, 22 nm,
on/off 17, 4-bit ADC, 128 x 128 sub-arrays, 1 bit per cell, 8-bit weights and activations: area 381.90 mm^2,
6.25 TOPS, 11.25 TOPS/W) and against NeuroSim built and run here (:data:`NEUROSIM_RUN`), from whose figures
:func:`periphery_keys` derives the periphery keys of ``configs/technology/22nm.toml`` and the 45 nm defaults.

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
from neft.cost.inference import AREA_TERMS, ENERGY_TERMS

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


# DNN+NeuroSim V1.4 built and run here (Param.cpp: memcelltype 2 (RRAM), levelOutput 16 (4-bit ADC), technode 22
# or 45, the rest its defaults; `main NetWork_VGG8.csv 8 8 128 32` on synthetic traces: this script's VGG8 at
# torch's initialisation (seed 0), one random image, 8-bit activations, 16.8 % of the input bits 1): its summary
# lines, per image
NEUROSIM_RUN = {
    22: {"chip_mm2": 345.169, "array_mm2": 3.60536, "ic_mm2": 26.3107, "adc_mm2": 5.0672, "accum_mm2": 17.079,
         "other_mm2": 46.8532, "dynamic_uJ": 50.6786, "leakage_uJ": 0.319776, "buffer_uJ": 0.190809,
         "ic_uJ": 6.67109, "adc_uJ": 29.5789, "accum_uJ": 9.82009, "other_uJ": 11.2796, "TOPS": 7.88568,
         "TOPS_per_W": 19.7987},
    45: {"chip_mm2": 1760.36, "array_mm2": 15.0844, "ic_mm2": 129.915, "adc_mm2": 20.9437, "accum_mm2": 71.4565,
         "other_mm2": 224.867, "dynamic_uJ": 141.856, "leakage_uJ": 2.15296, "buffer_uJ": 0.745132,
         "ic_uJ": 21.1038, "adc_uJ": 68.304, "accum_uJ": 37.7948, "other_uJ": 35.7575, "TOPS": 2.93709,
         "TOPS_per_W": 7.01136},
}
COMPONENTS = ("array_mm2", "ic_mm2", "adc_mm2", "accum_mm2", "other_mm2")  # its chip area less the floor plan
NEUROSIM_DUPLICATION = (16, 16, 4, 4, 2, 1, 1, 8)  # its per-layer speed-up (weight copies) for pipelining
TRACE_ACTIVITY = 0.168  # the fraction of 1 bits in the synthetic input traces given to it
# its 22 nm run's latency per image of each layer (weight copies working in parallel), and of that its buffers',
# its interconnect's and its ADCs' (sense amplifiers and precharger) latency, in ns ("layerN's readLatency is", ...)
NEUROSIM_LAYER_LATENCY_NS = {
    "total": (156212, 100723, 57392.3, 60073.1, 19618.1, 37179.8, 1099.79, 467.428),
    "buffer": (108206, 40714.3, 9700.17, 13902.4, 2838.85, 4655.57, 460.306, 246.221),
    "interconnect": (22179.3, 29849.9, 24888.6, 22698.5, 8528.79, 15988.2, 182.678, 161.481),
    "adc": (25203.1, 25203.1, 21954.7, 21954.7, 8064.98, 16130, 448.055, 56.0068),
}


def neurosim_counts(model: nn.Module) -> tuple[int, int, int, int]:
    """NeuroSim's 128 x 128 sub-arrays of VGG8 (one column per weight bit, no differential pair) without and with
    its weight duplication, their read cycles per image (8 input bits per output position), and the activation bits
    in and out of the layers (``sum P (R + O) 8``, the count neft's buffer and interconnect keys multiply)."""
    arrays = duplicated = cycles = bits = 0
    layers = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer, copies, macs in zip(layers, NEUROSIM_DUPLICATION, _macs(model)):
        conv = isinstance(layer, nn.Conv2d)
        rows = layer.in_channels * 9 if conv else layer.in_features
        outputs = layer.out_channels if conv else layer.out_features
        positions = macs // (rows * outputs)
        count = -(-rows // 128) * -(-8 * outputs // 128)
        arrays, duplicated = arrays + count, duplicated + count * copies
        cycles += count * positions * 8
        bits += positions * (rows + outputs) * 8
    return arrays, duplicated, cycles, bits


def periphery_keys(run: dict, model: nn.Module) -> dict:
    """neft's periphery keys from a NeuroSim run: area per physical sub-array (duplicates included) of its
    accumulation and other peripheries, and of its interconnect; energy per sub-array read cycle of its other
    peripheries less buffers and interconnect; buffer and interconnect energy per activation bit."""
    _, duplicated, cycles, bits = neurosim_counts(model)
    return {"array_periphery_area": (run["accum_mm2"] + run["other_mm2"]) * 1e-6 / duplicated,
            "interconnect_area": run["ic_mm2"] * 1e-6 / duplicated,
            "array_periphery_energy": (run["other_uJ"] - run["buffer_uJ"] - run["ic_uJ"]) * 1e-6 / cycles,
            "buffer_energy": run["buffer_uJ"] * 1e-6 / bits, "interconnect_energy": run["ic_uJ"] * 1e-6 / bits}


def _figures(table, ops: float) -> dict:
    """Throughput layer by layer and pipelined with NeuroSim's weight copies (each layer's latency divided by its
    copies, the slowest layer setting the pace), energy efficiency, energy per image and area (with the copies)."""
    total = table.totals()
    layers = [layer for layer in table.layers if layer.kind == "crossbar"]
    stage = max(layer.latency / copies for layer, copies in zip(layers, NEUROSIM_DUPLICATION))
    return {"TOPS": ops / total["latency_s"] / 1e12, "TOPS_pipelined": ops / stage / 1e12,
            "TOPS_per_W": ops / total["energy_J"] / 1e12, "energy_uJ": total["energy_J"] * 1e6,
            "area_mm2": total["area_m2"] * 1e6,
            "area_duplicated_mm2": sum(layer.total_area * c for layer, c in zip(layers, NEUROSIM_DUPLICATION)) * 1e6}


def against_neurosim() -> None:
    """NeuroSim's VGG8 at Table VII's configuration, ours against its published figures and against its run here,
    before (8-bit DACs, analog ADCs, no periphery) and after (bit-serial inputs, a conversion per bit column, the
    periphery keys)."""
    torch.manual_seed(0)
    model = neurosim_vgg8()
    ops = 2 * sum(macs for macs in _macs(model))
    for node, run in NEUROSIM_RUN.items():
        print(f"periphery keys from the {node} nm NeuroSim run: " + ", ".join(
            f"{key}={value:.3g}" for key, value in periphery_keys(run, model).items()))
    arrays, duplicated, cycles, bits = neurosim_counts(model)
    print(f"NeuroSim sub-arrays {arrays} ({duplicated} with copies), {cycles} array read cycles, {bits} activation "
          f"bits per image")
    before = ChipSettings(DeviceModel(weight_bits=8, device_bits=1),
                          CircuitSettings(tile_rows=128, dac_bits=8, adc_bits=4).check())
    after = ChipSettings(DeviceModel(weight_bits=8, device_bits=1),
                         CircuitSettings(tile_rows=128, dac_bits=8, adc_bits=4, adc_mode="sliced").check())
    zero = dict.fromkeys(periphery_keys(NEUROSIM_RUN[22], model), 0.0)
    rows = {"before": chip_cost(model, before, technology(AT_22NM, input_mode="parallel", **zero), (3, 32, 32)),
            "after": chip_cost(model, after, technology(AT_22NM), (3, 32, 32)),
            "after, trace activity": chip_cost(model, after, technology(AT_22NM, input_activity=TRACE_ACTIVITY),
                                               (3, 32, 32))}
    run = NEUROSIM_RUN[22]
    published = {"TOPS": 6.25, "TOPS_per_W": 11.25, "energy_uJ": ops / 11.25e12 * 1e6, "area_mm2": 381.90}
    ran = {"TOPS": run["TOPS"], "TOPS_per_W": run["TOPS_per_W"], "energy_uJ": ops / run["TOPS_per_W"] / 1e12 * 1e6,
           "area_mm2": run["chip_mm2"]}
    print(f"{'neft':<22} {'TOPS':>7} {'pipelined':>9} {'TOPS/W':>7} {'uJ/image':>9} {'mm^2':>7} {'copies':>7} | "
          f"ratios to Table VII (TOPS pipelined, TOPS/W, uJ, mm^2 copies) | to the run here")
    for name, table in rows.items():
        f = _figures(table, ops)
        ratio = [f["TOPS_pipelined"] / published["TOPS"], f["TOPS_per_W"] / published["TOPS_per_W"],
                 f["energy_uJ"] / published["energy_uJ"], f["area_duplicated_mm2"] / published["area_mm2"]]
        mine = [f["TOPS_pipelined"] / ran["TOPS"], f["TOPS_per_W"] / ran["TOPS_per_W"],
                f["energy_uJ"] / ran["energy_uJ"], f["area_duplicated_mm2"] / ran["area_mm2"]]
        print(f"{name:<22} {f['TOPS']:>7.2f} {f['TOPS_pipelined']:>9.2f} {f['TOPS_per_W']:>7.2f} "
              f"{f['energy_uJ']:>9.1f} {f['area_mm2']:>7.1f} {f['area_duplicated_mm2']:>7.1f} | "
              + " ".join(f"{r:.2f}" for r in ratio) + " | " + " ".join(f"{r:.2f}" for r in mine))
        total = table.totals()
        print("   energy (uJ): " + ", ".join(f"{t} {total[f'energy_{t}_J'] * 1e6:.2f}" for t in ENERGY_TERMS)
              + "; area (mm^2): " + ", ".join(f"{t} {total[f'area_{t}_m2'] * 1e6:.2f}" for t in AREA_TERMS))
    print(f"NeuroSim run here: {run['TOPS']:.2f} TOPS, {run['TOPS_per_W']:.2f} TOPS/W, {ran['energy_uJ']:.1f} uJ "
          f"per image (ADC {run['adc_uJ']:.1f}, accumulation {run['accum_uJ']:.1f}, other {run['other_uJ']:.1f} of "
          f"which interconnect {run['ic_uJ']:.1f} and buffers {run['buffer_uJ']:.2f}; x 1.22 post-layout), chip "
          f"{run['chip_mm2']:.1f} mm^2 of which components {sum(run[k] for k in COMPONENTS):.1f}")
    latency_by_layer(model, after)


def latency_by_layer(model: nn.Module, chip: ChipSettings) -> None:
    """Each layer's latency per image against NeuroSim's 22 nm run (:data:`NEUROSIM_LAYER_LATENCY_NS`): neft's
    layer latency divided by NeuroSim's weight copies of the layer, whole and its read cycles alone (the digital
    adds made free: ``clock`` 1e18 Hz), against NeuroSim's layer latency less its buffer and interconnect latency
    (neft models neither) and its ADC latency; the slowest layer sets a pipeline's pace."""
    ns = NEUROSIM_LAYER_LATENCY_NS
    assert all(len(values) == len(NEUROSIM_DUPLICATION) for values in ns.values()), "one figure per VGG8 layer"
    whole, reads = ([layer.latency * 1e9 / copies for layer, copies in zip(
        [layer for layer in chip_cost(model, chip, technology(AT_22NM, **keys), (3, 32, 32)).layers
         if layer.kind == "crossbar"], NEUROSIM_DUPLICATION)] for keys in ({}, {"clock": 1e18}))
    compute = [t - b - i for t, b, i in zip(ns["total"], ns["buffer"], ns["interconnect"])]
    print("layer copies | NeuroSim ns: total, buffers, interconnect, rest, ADC | neft ns / copies: whole, read "
          "cycles | whole / rest, read cycles / ADC")
    for i, copies in enumerate(NEUROSIM_DUPLICATION):
        print(f"{i + 1:>5} {copies:>6} | {ns['total'][i]:>9.0f} {ns['buffer'][i]:>9.0f} {ns['interconnect'][i]:>9.0f} "
              f"{compute[i]:>9.0f} {ns['adc'][i]:>9.0f} | {whole[i]:>9.0f} {reads[i]:>9.0f} | "
              f"{whole[i] / compute[i]:.2f} {reads[i] / ns['adc'][i]:.2f}")
    print(f"slowest layer (the pipeline's pace): NeuroSim {max(ns['total']):.0f} ns, less buffers and interconnect "
          f"{max(compute):.0f} ns; neft {max(whole):.0f} ns ({max(whole) / max(compute):.2f} of the latter)")


def _macs(model: nn.Module) -> list[int]:
    """Multiply-accumulates per image of each Conv/Linear of NeuroSim's VGG8 on a 32 x 32 image."""
    macs, size = [], 32
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            macs.append(size * size * layer.in_channels * 9 * layer.out_channels)
        elif isinstance(layer, nn.MaxPool2d):
            size //= 2
        elif isinstance(layer, nn.Linear):
            macs.append(layer.in_features * layer.out_features)
    return macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (default: %(default)s)")
    args = parser.parse_args()
    timing(args.repeats)
    against_neurosim()


if __name__ == "__main__":
    main()
