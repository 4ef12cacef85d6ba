"""The cost table of one chip: every layer's energy, latency and area per inference, their totals, and the
programming cost per chip, as JSON and CSV (docs/method.md, 'What a chip costs'; docs/results.md)."""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from neft.chip.settings import ChipSettings
from neft.common.errors import SettingError
from neft.cost.inference import AREA_TERMS, ENERGY_TERMS, LayerCost, crossbar_cost, digital_cost
from neft.cost.network import network_layers
from neft.cost.programming import programming_cost
from neft.cost.technology import Technology

__all__ = ["CostTable", "chip_cost"]


@dataclass
class CostTable:
    """Per-layer costs of one inference on one chip, and the programming cost per chip.

    Attributes:
        layers: one :class:`~neft.cost.inference.LayerCost` per mapped and digital layer, in forward order.
        technology: the constants used; chip: the chip's settings (``ChipSettings.to_dict()``).
        programming: ``{term: {"seconds", "joules"}}`` (:func:`neft.cost.programming.programming_cost`).
    """

    layers: list[LayerCost]
    technology: Technology
    chip: dict
    programming: dict

    def totals(self) -> dict:
        """``energy_J`` (per inference), ``energy_<term>_J``, ``latency_s``, ``area_m2``, ``area_<term>_m2``,
        ``tiles``, ``adcs``, ``dacs``, ``macs``: sums over the layers."""
        rows = [layer.row() for layer in self.layers]
        keys = ["tiles", "adcs", "dacs", "macs", *(f"energy_{t}_J" for t in ENERGY_TERMS), "energy_J",
                "latency_s", *(f"area_{t}_m2" for t in AREA_TERMS), "area_m2"]
        return {key: sum(row[key] for row in rows) for key in keys}

    def summary(self) -> dict:
        """What a results file records (its ``cost`` field, docs/results.md): the totals, the programming cost, the
        node and every technology key."""
        totals = self.totals()
        return {"node": self.technology.node, "energy_J": totals["energy_J"], "latency_s": totals["latency_s"],
                "area_m2": totals["area_m2"], "tiles": totals["tiles"], "adcs": totals["adcs"],
                "programming": self.programming, "technology": self.technology.to_dict()}

    def to_dict(self) -> dict:
        """The whole table, JSON-ready: ``{"node", "technology", "chip", "layers": [row], "total": totals,
        "programming"}``."""
        return {"node": self.technology.node, "technology": self.technology.to_dict(), "chip": self.chip,
                "layers": [layer.row() for layer in self.layers], "total": self.totals(),
                "programming": self.programming}

    def write(self, json_path: str | Path, csv_path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON and the layer rows plus a ``total`` row as CSV."""
        Path(json_path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        rows = [layer.row() for layer in self.layers]
        total = {"layer": "total", "kind": "", **self.totals(), "reads": ""}
        with open(csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0] if rows else total))
            writer.writeheader()
            writer.writerows([*rows, total])


def chip_cost(model: nn.Module, chip: ChipSettings, tech: Technology, input_shape: tuple[int, ...],
              deployment: dict | None = None, include: Iterable[str] | None = None,
              exclude: Iterable[str] | None = None) -> CostTable:
    """The cost table of ``model`` on ``chip``.

    Args:
        model: the network (its weights set the programmed conductances; not modified).
        chip: the chip (:class:`~neft.chip.settings.ChipSettings`: device bits, circuit).
        tech: the technology constants (:func:`neft.cost.technology.technology`).
        input_shape: one input without the batch axis, e.g. ``(3, 32, 32)``.
        deployment: the per-chip counts of a results file's ``deployment_cost`` (None: every mapped weight
            programmed open-loop, no fix).
        include, exclude: module-name patterns of the mapped layers.

    Raises:
        ValueError: the model has no mapped weight or cannot run on ``input_shape``; a negative count in
            ``deployment``.
        SettingError: (setting ``technology``) keys that make a cost or a programming cost overflow to infinity.

    Warns:
        UserWarning: a realistic chip (``quantize``) whose device range (``g_max``, ``on_off_ratio``) is not the
            technology's ``g_on`` and ``g_off``, which the energies use.
    """
    _warn_conductances(chip.device_model, tech)
    mapped, digital = network_layers(model, input_shape, chip.device_model, include, exclude)
    try:
        layers = [crossbar_cost(layer, chip.circuit, chip.device_model, tech) for layer in mapped]
        layers += [digital_cost(layer, tech) for layer in digital]
    except OverflowError:
        layers = None
    if layers is None or not all(math.isfinite(sum(values)) for values in zip(
            *[(layer.total_energy, layer.latency, layer.total_area) for layer in layers])):
        raise SettingError("technology", "the technology keys give a cost too large for a number (an energy, time "
                                         "or area overflows): check keys far from their defaults (feature_size, "
                                         "adc_sample_rate, clock, ideal_bits)")
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    layers.sort(key=lambda cost: order.get(cost.name.removesuffix(".weight") if cost.kind == "crossbar"
                                           else cost.name, 0))
    counts = deployment or {"mapped_weights": sum(layer.fan_in * layer.outputs for layer in mapped)}
    energy = sum(layer.total_energy for layer in layers)
    latency = sum(layer.latency for layer in layers)
    programming = programming_cost(counts, chip.device_model.devices_per_weight, tech, energy, latency)
    if not all(math.isfinite(value) for spent in programming.values() for value in spent.values()):
        raise SettingError("technology", "the technology keys give a programming cost too large for a number: "
                                         "check keys far from their defaults (write_time, verify_pulses, "
                                         "open_loop_pulses, write_voltage)")
    return CostTable(layers, tech, chip.to_dict(), programming)


def _warn_conductances(device_model, tech: Technology) -> None:
    """Warn when a realistic chip's device range (``g_max``, ``g_max / on_off_ratio``, what its accuracy simulation
    programs) is not the technology's ``g_on`` and ``g_off`` (what the crossbar and programming energies use)."""
    if not device_model.quantize:
        return
    g_on, g_off = device_model.g_max * 1e-6, device_model.g_max * 1e-6 / device_model.on_off_ratio
    if not (math.isclose(g_on, tech.g_on, rel_tol=1e-6) and math.isclose(g_off, tech.g_off, rel_tol=1e-6,
                                                                          abs_tol=1e-15)):
        warnings.warn(f"the chip's devices span {g_off * 1e6:.4g}-{g_on * 1e6:.4g} uS (device model "
                      f"{device_model.name}: g_max, on_off_ratio), the cost's energies use the technology's g_off "
                      f"{tech.g_off * 1e6:.4g} and g_on {tech.g_on * 1e6:.4g} uS; to cost the simulated devices, "
                      f"set g_on={g_on:.6g} g_off={g_off:.6g} (--set)", stacklevel=3)
