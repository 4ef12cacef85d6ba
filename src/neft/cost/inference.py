"""Energy, latency and area of one inference, layer by layer, from the chip's configuration (docs/method.md, 'What
a chip costs').

For a mapped layer of R rows (fan-in), O outputs and P reads per inference on a chip whose weights take
``n = weight_bits / device_bits`` devices on a differential pair (2 n physical columns per output), with
``s = n`` ADC conversions per output and row tile in ``adc_mode="sliced"`` (one per bit slice) and ``s = 1`` in
``"analog"`` (the weight's devices summed in the column before the ADC):

* tiles: ``row_tiles = ceil(R / tile_rows)`` (1 when ``tile_rows`` is None), ``col_tiles = ceil(2 n O /
  tile_columns)`` (``tile_columns`` None: ``tile_rows``, or one array per layer), ``tiles = row_tiles * col_tiles``;
* ADCs: each array (column tile) of ``w`` physical columns converts its own ``a = ceil(s w / (2 n))`` columns
  with ``ceil(a / columns_per_adc)`` ADCs, each converting ``ceil(a / ceil(a / columns_per_adc))`` columns one
  after another per read; ``m``, the most of any array, sets the read cycle (the full arrays and the last, narrower
  one counted apart);
* inputs: B = ``dac_bits`` (``ideal_bits`` for an ideal DAC); ``input_mode="parallel"``: one B-bit DAC
  conversion per row and read (c = 1 read cycle per read); ``"bit_serial"``: B read cycles of 1-bit inputs
  (c = B), each converted by the ADCs and shift-added (DNN+NeuroSim's ``numBitInput`` read cycles);
* energy: crossbar ``P * c * a * V_read**2 * t_read * sum(G)`` (every row driven at the read voltage for the read
  time, an upper bound on the input-dependent energy; ``a = input_activity`` in bit-serial mode, 1 otherwise;
  ``G = g_off + (g_on - g_off) * level / (2**device_bits - 1)`` of each programmed device); DAC ``P * c *
  col_tiles * R * dac_fom * 2**b`` (b = B parallel, 1 bit-serial); ADC ``P * c * row_tiles * s * O * adc_fom *
  2**B_adc`` (Walden: energy per conversion = FOM * 2**ENOB, ENOB taken as the bits); shift-and-add ``P *
  row_tiles * O * (c * s - 1)`` adds; accumulation across row tiles ``P * O * (row_tiles - 1)`` adds; bias ``P *
  O`` adds; array periphery ``P * c * tiles * array_periphery_energy``; buffers and interconnect ``P * (R + O) *
  B`` activation bits times ``buffer_energy`` and ``interconnect_energy``;
* latency: ``P * c * (t_read + m / adc_sample_rate)`` (all tiles of a layer in parallel, reads one after another)
  plus the shift-and-add adds on one adder per ADC, one add per clock cycle (``ceil(adds / ADCs) / clock``), plus
  the accumulation and bias adds over ``digital_lanes`` per clock cycle; layers run one after another;
* area: ``tiles * rows * columns * cell_area_f2 * F**2`` (whole arrays), ADCs ``* adc_area_per_step * 2**B_adc``,
  one DAC per array row ``* dac_area_per_step * 2**b``, ``tiles * array_periphery_area`` and ``tiles *
  interconnect_area``.

A grouped convolution's groups are packed block-diagonally, ``floor(tile_rows / R)`` groups per block of arrays
(:func:`_grouped_cost`), the blocks read side by side.

Digital layers (:class:`~neft.cost.network.DigitalLayer`) cost ``adds * digital_add + mults * digital_mult`` and
``(adds + mults) / digital_lanes`` clock cycles.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from neft.chip.circuit_settings import CircuitSettings
from neft.chip.device_model import DeviceModel
from neft.cost.network import DigitalLayer, MappedLayer
from neft.cost.technology import Technology

__all__ = ["LayerCost", "crossbar_cost", "digital_cost", "ENERGY_TERMS", "AREA_TERMS"]

ENERGY_TERMS = ("array", "dac", "adc", "shift_add", "accumulate", "digital", "periphery", "buffer",
                "interconnect")
AREA_TERMS = ("array", "adc", "dac", "periphery", "interconnect")


@dataclass
class LayerCost:
    """The cost of one layer per inference.

    Attributes:
        name: the mapped weight's or the digital module's name; kind: ``"crossbar"`` or the digital kind.
        tiles, adcs, dacs: crossbar arrays, ADCs and DACs of the layer (0 for a digital layer).
        reads: crossbar reads per inference; macs: multiply-accumulates done on the crossbar.
        energy: joules per inference by term of :data:`ENERGY_TERMS`; latency: seconds per inference;
        area: square metres by term of :data:`AREA_TERMS`.
    """

    name: str
    kind: str
    tiles: int = 0
    adcs: int = 0
    dacs: int = 0
    reads: int = 0
    macs: int = 0
    energy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ENERGY_TERMS, 0.0))
    latency: float = 0.0
    area: dict[str, float] = field(default_factory=lambda: dict.fromkeys(AREA_TERMS, 0.0))

    @property
    def total_energy(self) -> float:
        """Joules per inference, every term."""
        return sum(self.energy.values())

    @property
    def total_area(self) -> float:
        """Square metres, every term."""
        return sum(self.area.values())

    def row(self) -> dict:
        """The flat table row: name, kind, counts, ``energy_<term>_J``, ``energy_J``, ``latency_s``,
        ``area_<term>_m2``, ``area_m2``."""
        return {"layer": self.name, "kind": self.kind, "tiles": self.tiles, "adcs": self.adcs, "dacs": self.dacs,
                "reads": self.reads, "macs": self.macs,
                **{f"energy_{term}_J": value for term, value in self.energy.items()},
                "energy_J": self.total_energy, "latency_s": self.latency,
                **{f"area_{term}_m2": value for term, value in self.area.items()}, "area_m2": self.total_area}


def _ceil(a: int, b: int) -> int:
    """``ceil(a / b)`` for a >= 0 and b >= 1; 0 when a is 0."""
    return -(-a // b)


def _input_cycles(circuit: CircuitSettings, tech: Technology) -> tuple[int, int, int]:
    """``(input bits B, DAC bits per read cycle, read cycles per read)``: ``(B, B, 1)`` with ``input_mode``
    ``"parallel"`` (one B-bit DAC conversion per row), ``(B, 1, B)`` with ``"bit_serial"`` (B cycles of 1-bit
    inputs); B is the chip's ``dac_bits``, ``ideal_bits`` for an ideal DAC."""
    bits = circuit.dac_bits if circuit.dac_bits is not None else tech.ideal_bits
    return (bits, 1, bits) if tech.input_mode == "bit_serial" else (bits, bits, 1)


def _array_adcs(columns: int, tile_columns: int, col_tiles: int, per_column: float,
                columns_per_adc: int) -> tuple[int, int]:
    """``(ADCs of one row tile, conversions per ADC per read cycle)``: each array (column tile) converts its own
    ``a = ceil(per_column * its physical columns)`` columns with ``ceil(a / columns_per_adc)`` ADCs; the full arrays
    and the last, narrower one counted apart, the slowest ADC setting the conversions per cycle."""
    if not col_tiles:
        return 0, 0
    widths = [(tile_columns, col_tiles - 1), (columns - tile_columns * (col_tiles - 1), 1)]
    adcs, serial = 0, 0
    for width, count in widths:
        converted = math.ceil(per_column * width - 1e-9)
        if count and converted:
            per_array = _ceil(converted, columns_per_adc)
            adcs += count * per_array
            serial = max(serial, _ceil(converted, per_array))
    return adcs, serial


def crossbar_cost(layer: MappedLayer, circuit: CircuitSettings, device_model: DeviceModel,
                  tech: Technology) -> LayerCost:
    """The cost of one mapped layer per inference (the module docstring's formulas).

    Args:
        layer: the layer's geometry and programmed levels (:func:`neft.cost.network.network_layers`).
        circuit: the chip's circuit (``tile_rows``, ``dac_bits``, ``adc_bits``, ``adc_mode``).
        device_model: ``weight_bits``, ``device_bits`` (devices per weight).
        tech: the technology constants (``input_mode`` parallel or bit-serial inputs).

    Returns:
        A :class:`LayerCost`; a layer without rows, outputs or reads has zero energy and latency (and no tiles
        when it has no rows or outputs).
    """
    if layer.groups > 1:
        return _grouped_cost(layer, circuit, device_model, tech)
    n, k = device_model.devices_per_weight, device_model.device_bits
    s = n if circuit.adc_mode == "sliced" and circuit.adc_bits is not None else 1
    rows, outputs, reads = layer.fan_in, layer.outputs, layer.reads
    columns = 2 * n * outputs
    tile_rows = circuit.tile_rows or rows
    tile_columns = tech.tile_columns or circuit.tile_rows or columns
    row_tiles = _row_tiles(rows, circuit)
    col_tiles = _ceil(columns, tile_columns) if columns else 0
    adcs_per_row_tile, serial = _array_adcs(columns, tile_columns, col_tiles, s / (2 * n), tech.columns_per_adc)
    b_in, b_dac, per_read = _input_cycles(circuit, tech)
    cycles = reads * per_read
    b_adc = circuit.adc_bits if circuit.adc_bits is not None else tech.ideal_bits
    cost = LayerCost(layer.name, "crossbar", row_tiles * col_tiles, row_tiles * adcs_per_row_tile,
                     row_tiles * col_tiles * tile_rows if rows else 0, reads, reads * rows * outputs)
    devices = 2 * n * rows * outputs
    conductance = devices * tech.g_off + (tech.g_on - tech.g_off) / (2 ** k - 1) * layer.level_sum
    activity = tech.input_activity if per_read > 1 else 1.0
    shift_adds = reads * row_tiles * outputs * (per_read * s - 1) if rows else 0
    adds = _digital_adds(reads, outputs, row_tiles, layer.bias)
    bits = reads * (rows + outputs) * b_in if rows and outputs else 0  # activations in and out of the buffers
    cost.energy.update(
        array=cycles * activity * tech.read_voltage ** 2 * tech.read_time * conductance,
        dac=cycles * col_tiles * rows * tech.dac_fom * 2 ** b_dac,
        adc=cycles * row_tiles * s * outputs * tech.adc_fom * 2 ** b_adc,
        shift_add=shift_adds * tech.digital_add,
        accumulate=reads * outputs * max(row_tiles - 1, 0) * tech.digital_add,
        digital=reads * outputs * tech.digital_add if layer.bias and rows else 0.0,
        periphery=cycles * cost.tiles * tech.array_periphery_energy,
        buffer=bits * tech.buffer_energy, interconnect=bits * tech.interconnect_energy)
    cost.latency = (cycles * (tech.read_time + serial * tech.adc_time) + adds / tech.digital_lanes / tech.clock
                    + _ceil(shift_adds, cost.adcs) / tech.clock if rows and outputs else 0.0)
    cost.area.update(array=cost.tiles * tile_rows * tile_columns * tech.cell_area_f2 * tech.feature_size ** 2,
                     adc=cost.adcs * tech.adc_area_per_step * 2 ** b_adc,
                     dac=cost.dacs * tech.dac_area_per_step * 2 ** b_dac,
                     periphery=cost.tiles * tech.array_periphery_area,
                     interconnect=cost.tiles * tech.interconnect_area)
    return cost


def _digital_adds(reads: int, outputs: int, row_tiles: int, bias: bool) -> int:
    """Adds per inference on the digital lanes: the partial sums of the row tiles and the bias of each output."""
    return reads * outputs * (max(row_tiles - 1, 0) + (1 if bias else 0)) if row_tiles else 0


def _row_tiles(rows: int, circuit: CircuitSettings) -> int:
    """Row tiles of a matrix of ``rows`` rows: ``ceil(rows / tile_rows)``, 1 without tiles, 0 without rows."""
    return _ceil(rows, circuit.tile_rows or rows) if rows else 0


def _grouped_cost(layer: MappedLayer, circuit: CircuitSettings, device_model: DeviceModel,
                  tech: Technology) -> LayerCost:
    """A grouped convolution of ``g`` groups, each ``R`` rows and ``O / g`` outputs on its own inputs, packed
    block-diagonally: ``k = floor(tile_rows / R)`` groups (at least 1; all ``g`` without tiles) share a block of
    ``k R`` rows and ``k O / g`` outputs whose other devices hold level 0. Each block is costed as a dense layer
    (its share of the level sum), the blocks read side by side (the slowest one's latency), their accumulation and
    bias adds on the shared ``digital_lanes``; the MACs are the groups' own, ``P R O``."""
    g, per_group, rows = layer.groups, layer.outputs // layer.groups, layer.fan_in
    k = max(1, min(g, circuit.tile_rows // rows)) if circuit.tile_rows and rows else g
    full, rest = divmod(g, k)
    total = LayerCost(layer.name, "crossbar", reads=layer.reads, macs=layer.reads * rows * layer.outputs)
    slowest, adds = (0.0, 0), 0
    for count, groups in [(full, k)] + ([(1, rest)] if rest else []):
        block = crossbar_cost(dataclasses.replace(layer, fan_in=groups * rows, outputs=groups * per_group, groups=1,
                                                  level_sum=layer.level_sum * groups / g), circuit, device_model, tech)
        total.tiles, total.adcs = total.tiles + count * block.tiles, total.adcs + count * block.adcs
        total.dacs += count * block.dacs
        for costs, part in ((total.energy, block.energy), (total.area, block.area)):
            for term, value in part.items():
                costs[term] += count * value
        block_adds = _digital_adds(layer.reads, groups * per_group, _row_tiles(groups * rows, circuit), layer.bias)
        slowest, adds = max(slowest, (block.latency, block_adds)), adds + count * block_adds
    total.latency = slowest[0] + (adds - slowest[1]) / tech.digital_lanes / tech.clock if slowest[0] else 0.0
    return total


def digital_cost(layer: DigitalLayer, tech: Technology) -> LayerCost:
    """The cost of one digital layer per inference: ``adds * digital_add + mults * digital_mult`` joules (term
    ``digital``) and ``ceil((adds + mults) / digital_lanes) / clock`` seconds; no area is counted (the digital
    periphery is shared)."""
    cost = LayerCost(layer.name, layer.kind)
    cost.energy["digital"] = layer.adds * tech.digital_add + layer.mults * tech.digital_mult
    cost.latency = math.ceil((layer.adds + layer.mults) / tech.digital_lanes) / tech.clock
    return cost
