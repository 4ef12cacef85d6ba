"""What a chip costs (docs/method.md, 'What a chip costs'): a 2-layer network on 4 tiles computed by hand, monotone
in ADC bits and tiles, zero-size layers free, one technology key changing exactly its terms, bad input refused."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from neft.chip.circuit_settings import CircuitSettings
from neft.chip.device_model import DeviceModel
from neft.chip.settings import ChipSettings
from neft.cli.main import main
from neft.common.errors import SettingError
from neft.cost import chip_cost, technology
from neft.cost.inference import crossbar_cost
from neft.cost.network import MappedLayer

# round numbers, one per key, so that every term below can be checked by hand
TECH = dict(g_on=4.0, g_off=1.0, read_voltage=2.0, read_time=0.5, adc_fom=2.0, dac_fom=1.0, adc_sample_rate=0.25,
            digital_add=3.0, digital_mult=5.0, clock=2.0, digital_lanes=1, tile_columns=8, columns_per_adc=2,
            cell_area_f2=1.0, feature_size=1.0, adc_area_per_step=10.0, dac_area_per_step=1.0, write_voltage=3.0,
            write_time=0.25, verify_pulses=4.0, open_loop_pulses=1.0, parallel_writes=1, backward_factor=2.0,
            ideal_bits=3, input_mode="parallel", input_activity=0.5, array_periphery_area=0.0,
            array_periphery_energy=0.0, interconnect_area=0.0, buffer_energy=0.0, interconnect_energy=0.0)
# the periphery keys for the hand computation of the bit-serial test
PERIPHERY = dict(array_periphery_area=3.0, array_periphery_energy=1.0, interconnect_area=5.0, buffer_energy=2.0,
                 interconnect_energy=0.5)
NO_PERIPHERY = {"periphery": 0.0, "buffer": 0.0, "interconnect": 0.0}


def _two_layers() -> nn.Module:
    """Linear(4, 3, no bias) -> ReLU -> Linear(3, 2): levels of 2-bit weights on one 2-bit device (L = 3)."""
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3., -3, 1, 0], [2, 0, 0, -1], [0, 0, 0, 3]]))  # levels sum to 13
        model[2].weight.copy_(torch.tensor([[3., -1, 0], [-2, 3, 3]]))  # levels 3 1 0 2 3 3: 12
        model[2].bias.zero_()
    return model


def _chip(**circuit) -> ChipSettings:
    settings = dict(tile_rows=2, dac_bits=3, adc_bits=4, adc_mode="analog") | circuit
    return ChipSettings(DeviceModel(weight_bits=2, device_bits=2), CircuitSettings(**settings).check())


def test_a_two_layer_network_on_four_tiles_costs_what_the_formulas_give_by_hand():
    table = chip_cost(_two_layers(), _chip(), technology(**TECH), (4,))
    first, relu, second = table.layers
    # layer 1: R=4, O=3, P=1; 2 row tiles of 2 rows, 6 columns in one 8-column tile: 2 tiles; ceil(3/2) = 2 ADCs
    # per row tile (4), each converting 2 columns; 24 devices, sum G = 24 * 1 + (4 - 1) / 3 * 13 = 37
    assert (first.tiles, first.adcs, first.dacs, first.macs) == (2, 4, 4, 12)
    assert first.energy == {"array": 1 * 2.0 ** 2 * 0.5 * 37,  # 74
                            "dac": 1 * 1 * 4 * 1.0 * 2 ** 3,  # 32: one column tile, 4 rows, 3-bit DAC
                            "adc": 1 * 2 * 1 * 3 * 2.0 * 2 ** 4,  # 192: 2 row tiles x 3 outputs, 4-bit ADC
                            "shift_add": 0.0, "accumulate": 1 * 3 * (2 - 1) * 3.0, "digital": 0.0,  # 9
                            **NO_PERIPHERY}
    assert first.latency == 1 * (0.5 + 2 * 4.0) + 3 / 1 / 2.0  # read + 2 conversions of 4 s; 3 adds at 2 Hz: 10
    assert first.area == {"array": 2 * 2 * 8 * 1.0, "adc": 4 * 10.0 * 2 ** 4, "dac": 4 * 1.0 * 2 ** 3,
                          "periphery": 0.0, "interconnect": 0.0}
    assert (relu.kind, relu.energy["digital"], relu.latency) == ("activation", 3 * 3.0, 3 / 2.0)
    # layer 2: R=3, O=2, bias; 2 row tiles, 4 columns: 2 tiles; 1 ADC per row tile converting 2 columns;
    # 12 devices, sum G = 12 + 12 = 24
    assert (second.tiles, second.adcs, second.dacs) == (2, 2, 4)
    assert second.energy == {"array": 4.0 * 0.5 * 24, "dac": 3 * 1.0 * 8, "adc": 2 * 2 * 2.0 * 16,
                             "shift_add": 0.0, "accumulate": 2 * 1 * 3.0, "digital": 2 * 3.0, **NO_PERIPHERY}
    assert second.latency == (0.5 + 2 * 4.0) + 2 * (1 + 1) / 1 / 2.0  # 10.5
    assert second.area == {"array": 32.0, "adc": 2 * 10.0 * 16, "dac": 4 * 1.0 * 8, "periphery": 0.0,
                           "interconnect": 0.0}
    total = table.totals()
    assert (total["tiles"], total["energy_J"], total["latency_s"], total["area_m2"]) == (4, 528.0, 22.0, 1088.0)


def test_bit_serial_inputs_and_the_periphery_cost_what_the_formulas_give_by_hand():
    tech = technology(**TECH | PERIPHERY | {"input_mode": "bit_serial"})
    first, relu, second = chip_cost(_two_layers(), _chip(), tech, (4,)).layers
    # 3-bit inputs: 3 read cycles of 1-bit inputs, half of the rows driven (input_activity 0.5), 1-bit drivers;
    # layer 1 (2 tiles, 2 row tiles of 3 outputs, sum G = 37, 4 rows + 3 outputs of 3-bit activations = 21 bits)
    assert first.energy == {"array": 3 * 0.5 * 2.0 ** 2 * 0.5 * 37,  # 111
                            "dac": 3 * 1 * 4 * 1.0 * 2 ** 1,  # 24
                            "adc": 3 * 2 * 3 * 2.0 * 2 ** 4,  # 576: every cycle converted
                            "shift_add": 1 * 2 * 3 * (3 * 1 - 1) * 3.0,  # 36: 3 partial sums per output, row tile
                            "accumulate": 3 * 1 * 3.0, "digital": 0.0,
                            "periphery": 3 * 2 * 1.0, "buffer": 21 * 2.0, "interconnect": 21 * 0.5}
    # 12 shift-adds on 4 ADCs' adders (3 clocks), 3 accumulation adds on 1 lane (3 clocks), at 2 Hz
    assert first.latency == 3 * (0.5 + 2 * 4.0) + 3 / 1 / 2.0 + 12 / 4 / 2.0  # 28.5
    assert first.area == {"array": 32.0, "adc": 4 * 10.0 * 16, "dac": 4 * 1.0 * 2, "periphery": 2 * 3.0,
                          "interconnect": 2 * 5.0}
    assert relu.energy["digital"] == 9.0 and relu.area == dict.fromkeys(relu.area, 0.0)
    # layer 2 (2 tiles, 2 row tiles of 2 outputs, sum G = 24, 3 + 2 activations = 15 bits, bias)
    assert second.energy == {"array": 3 * 0.5 * 4.0 * 0.5 * 24, "dac": 3 * 3 * 2.0, "adc": 3 * 2 * 2 * 2.0 * 16,
                             "shift_add": 2 * 2 * 2 * 3.0, "accumulate": 2 * 3.0, "digital": 2 * 3.0,
                             "periphery": 3 * 2 * 1.0, "buffer": 15 * 2.0, "interconnect": 15 * 0.5}
    assert second.latency == 3 * (0.5 + 2 * 4.0) + 2 * 2 / 1 / 2.0 + 8 / 2 / 2.0  # 29.5: 2 ADCs
    assert second.area == {"array": 32.0, "adc": 2 * 10.0 * 16, "dac": 4 * 2.0, "periphery": 6.0,
                           "interconnect": 10.0}


def test_bit_serial_inputs_take_one_read_per_input_bit():
    layer = MappedLayer("w", 300, 7, 5, False, 40.0)
    circuit = CircuitSettings(tile_rows=64, adc_bits=5, dac_bits=8).check()
    parallel = crossbar_cost(layer, circuit, DeviceModel(), technology(input_activity=0.25))
    serial = crossbar_cost(layer, circuit, DeviceModel(), technology(input_activity=0.25, input_mode="bit_serial"))
    assert serial.energy["adc"] == pytest.approx(8 * parallel.energy["adc"], rel=1e-12)
    assert serial.energy["array"] == pytest.approx(8 * 0.25 * parallel.energy["array"], rel=1e-12)
    assert serial.energy["dac"] == pytest.approx(8 * parallel.energy["dac"] / 2 ** 7, rel=1e-12)
    assert serial.area["dac"] == pytest.approx(parallel.area["dac"] / 2 ** 7, rel=1e-12)
    assert serial.latency > 7 * parallel.latency


def test_programming_and_each_fix_cost_what_the_formulas_give_by_hand():
    counts = {"mapped_weights": 18, "write_verify": {"weights_verified": 5}, "recalibrate_bn": {"images": 2},
              "chip_tune": {"images": 4, "weights_written_verified": 3}}
    cost = chip_cost(_two_layers(), _chip(), technology(**TECH), (4,), counts).programming
    # 2 devices per weight; a write pulse 3**2 * 4 * 0.25 = 9 J in 0.25 s; a verify read 2**2 * 4 * 0.5 + 2 * 2**3
    # = 24 J in 0.5 + 4 s; a verified device 4 iterations of both
    assert cost["programming"] == {"seconds": 36 * 0.25, "joules": 36 * 9.0}
    assert cost["write_verify"] == {"seconds": 40 * 4.75 - 10 * 0.25, "joules": 40 * 33.0 - 10 * 9.0}
    assert cost["recalibrate_bn"] == {"seconds": 2 * 22.0, "joules": 2 * 528.0}
    assert cost["chip_tune"] == {"seconds": 4 * 3 * 22.0 + 24 * 4.75, "joules": 4 * 3 * 528.0 + 24 * 33.0}
    assert cost["total"] == {"seconds": 9 + 187.5 + 44 + 378, "joules": 324 + 1230 + 1056 + 7128}


def test_sliced_adcs_convert_every_bit_slice_and_shift_and_add_them():
    layer = MappedLayer("w", 4, 3, 5, False, 0.0)
    device = DeviceModel(weight_bits=4, device_bits=2)  # 2 slices
    analog = crossbar_cost(layer, CircuitSettings(tile_rows=2, adc_bits=4).check(), device, technology(**TECH))
    sliced = crossbar_cost(layer, CircuitSettings(tile_rows=2, adc_bits=4, adc_mode="sliced").check(), device,
                           technology(**TECH))
    assert sliced.energy["adc"] == 2 * analog.energy["adc"] == 5 * 2 * 2 * 3 * 2.0 * 16
    assert sliced.energy["shift_add"] == 5 * 2 * 3 * (2 - 1) * 3.0 and analog.energy["shift_add"] == 0


def test_energy_grows_with_adc_bits_and_with_tiles():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 10))
    tech = technology()
    energy = [chip_cost(model, _chip(tile_rows=64, adc_bits=bits, dac_bits=8), tech, (3, 8, 8)).totals()["energy_J"]
              for bits in (3, 4, 6, 8)]
    assert energy == sorted(energy) and len(set(energy)) == 4
    tiles, energies = [], []
    for rows in (512, 128, 32, 8):
        total = chip_cost(model, _chip(tile_rows=rows, adc_bits=6, dac_bits=8), tech, (3, 8, 8)).totals()
        tiles.append(total["tiles"])
        energies.append(total["energy_J"])
    assert tiles == sorted(tiles) and len(set(tiles)) == 4
    assert energies == sorted(energies) and len(set(energies)) == 4


@pytest.mark.parametrize("layer", [MappedLayer("empty", 0, 5, 7, True, 0.0), MappedLayer("none", 5, 0, 7, True, 0.0)])
def test_a_zero_size_layer_costs_nothing(layer):
    cost = crossbar_cost(layer, CircuitSettings(tile_rows=4, adc_bits=6, dac_bits=8).check(), DeviceModel(),
                         technology())
    assert cost.total_energy == 0 and cost.latency == 0 and cost.total_area == 0 and cost.tiles == cost.adcs == 0


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_a_zero_size_layer_in_a_network_costs_nothing():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 0))
    first, empty = chip_cost(model, _chip(), technology(**TECH), (4,)).layers
    assert first.total_energy > 0 and empty.total_energy == empty.latency == empty.total_area == 0


@pytest.mark.parametrize("key, value, changed", [
    ("adc_fom", 3.0, {"energy adc"}),
    ("dac_fom", 2.0, {"energy dac"}),
    ("read_voltage", 1.0, {"energy array"}),
    ("g_off", 0.5, {"energy array"}),
    ("digital_add", 1.0, {"energy accumulate", "energy digital"}),
    ("adc_sample_rate", 1.0, {"latency"}),
    ("adc_area_per_step", 1.0, {"area adc"}),
    ("dac_area_per_step", 2.0, {"area dac"}),
    ("cell_area_f2", 48.0, {"area array"}),
    ("digital_mult", 1.0, set()),  # no multiply in this network
    ("input_activity", 1.0, set()),  # parallel inputs: no activity
    ("array_periphery_energy", 1.0, {"energy periphery"}),
    ("buffer_energy", 1.0, {"energy buffer"}),
    ("interconnect_energy", 1.0, {"energy interconnect"}),
    ("array_periphery_area", 1.0, {"area periphery"}),
    ("interconnect_area", 1.0, {"area interconnect"}),
])
def test_changing_one_technology_key_changes_exactly_the_terms_that_use_it(key, value, changed):
    def terms(tech):
        found = {}
        for layer in chip_cost(_two_layers(), _chip(), tech, (4,)).layers:
            found |= {(layer.name, f"energy {t}"): v for t, v in layer.energy.items()}
            found |= {(layer.name, f"area {t}"): v for t, v in layer.area.items()}
            found[(layer.name, "latency")] = layer.latency
        return found
    before, after = terms(technology(**TECH)), terms(technology(**TECH | {key: value}))
    assert {term for (_, term), v in before.items() if after[(_, term)] != v} == changed


@pytest.mark.parametrize("key, value, words", [
    ("adc_fom", -1e-15, "finite number >= 0"), ("digital_add", float("nan"), "finite number"),
    ("read_time", 0.0, "> 0"), ("columns_per_adc", 0, "more ADCs than columns"),
    ("columns_per_adc", 0.5, "more ADCs than columns"), ("tile_columns", 0, "integer >= 1"),
    ("g_off", 1.0, "must not exceed g_on"), ("adc_bitz", 3, "unknown technology key"),
    ("input_mode", "serial", "parallel, bit_serial"), ("input_activity", 1.5, "fraction"),
    ("open_loop_pulses", 0.0, "> 0"), ("verify_pulses", 0.5, "at least open_loop_pulses"),
])
def test_bad_technology_keys_are_refused_naming_the_key(key, value, words):
    with pytest.raises(SettingError, match=words) as caught:
        technology(**{key: value})
    assert caught.value.setting == key


def test_a_technology_file_overrides_the_defaults_and_python_overrides_the_file(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text("[technology]\nadc_fom = 5e-15\nfeature_size = 22e-9\n")
    tech = technology(path, feature_size=14e-9)
    assert (tech.adc_fom, tech.feature_size, tech.read_time) == (5e-15, 14e-9, 1.99e-9)
    assert (tech.node, technology().node, technology(path).node) == ("14 nm CMOS", "45 nm CMOS", "22 nm CMOS")
    path.write_text("dac_fom = 2e-15\n[technology]\nadc_fom = 5e-15\n")  # keys at the top and in the table: all
    assert (technology(path).dac_fom, technology(path).adc_fom) == (2e-15, 5e-15)
    path.write_text("adc_fom = 2e-15\n[technology]\nadc_fom = 5e-15\n")  # one key twice: which one? refused
    with pytest.raises(SettingError) as caught:
        technology(path)
    assert caught.value.setting == "adc_fom" and "both" in str(caught.value)


def test_neft_cost_writes_the_table_and_refuses_a_bad_key(tmp_path, capsys):
    args = ["cost", "--model", "lenet5", "--in-channels", "1", "--tile-rows", "128", "--adc-bits", "6",
            "--out", str(tmp_path)]
    assert main(args + ["--set", "read_time=0"]) == 2
    assert "read_time" in capsys.readouterr().err and not list(tmp_path.iterdir())
    bad = tmp_path.parent / f"{tmp_path.name}-bad"
    bad.mkdir()
    for name, text, message in [("list.json", "[1, 2]", "must hold a table of keys"),
                                ("broken.toml", "adc_fom = ", "broken.toml is not valid TOML")]:
        (bad / name).write_text(text)
        assert main(args + ["--technology", str(bad / name)]) == 2 and message in capsys.readouterr().err
    for pairs, message in [(["ideal_bits=2000"], "at most 32"), (["feature_size=1e300"], "too large"),
                           (["write_time=1e300", "open_loop_pulses=1e10", "verify_pulses=1e10"],
                            "programming cost too large")]:
        assert main(args + [arg for pair in pairs for arg in ("--set", pair)]) == 2
        assert message in capsys.readouterr().err
    assert main(args + ["--image-size", "4"]) == 2 and "cannot run on one input" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert main(args) == 0
    table = json.loads((tmp_path / "lenet5_cost.json").read_text())
    rows = (tmp_path / "lenet5_cost.csv").read_text().splitlines()
    assert [row["layer"] for row in table["layers"] if row["kind"] == "crossbar"] == [
        "features.0.0.weight", "features.1.0.weight", "classifier.1.weight", "classifier.3.weight",
        "classifier.5.weight"]
    assert len(rows) == 1 + len(table["layers"]) + 1 and rows[-1].startswith("total,")
    assert table["total"]["energy_J"] == pytest.approx(sum(row["energy_J"] for row in table["layers"]))
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    (tmp_path / "lenet5_cost.json").unlink()  # the CSV left alone is not replaced either
    assert main(args) == 2 and "lenet5_cost.csv exists" in capsys.readouterr().err
    assert main(args + ["--set", "adc_fom=1e-12", "--set", "columns_per_adc=4", "--overwrite"]) == 0
    keys = json.loads((tmp_path / "lenet5_cost.json").read_text())["technology"]
    assert (keys["adc_fom"], keys["columns_per_adc"]) == (1e-12, 4)  # every --set counts


def test_write_verify_never_costs_less_than_programming_open_loop():
    """The write-verify term is the verified devices' cost minus their open-loop cost: with verify_pulses >=
    open_loop_pulses (checked) it is never negative; by hand for the round keys of TECH: 2 n = 2 devices per weight,
    12 + 6 = 18 mapped weights, 5 verified: 10 devices of 4 pulses of 0.25 + 0.5 + 4 s, less 1 pulse of 0.25 s."""
    tech = technology(**TECH)
    deployment = {"mapped_weights": 18, "write_verify": {"weights_verified": 5}}
    table = chip_cost(_two_layers(), _chip(), tech, (4,), deployment)
    assert table.programming["write_verify"]["seconds"] == pytest.approx(10 * (4 * (0.25 + 0.5 + 4.0) - 0.25))
    assert technology(**(TECH | {"verify_pulses": 1.0})).verify_pulses == 1.0  # equal: allowed, never below 0
    equal = chip_cost(_two_layers(), _chip(), technology(**(TECH | {"verify_pulses": 1.0})), (4,), deployment)
    assert equal.programming["write_verify"]["seconds"] > 0 and equal.programming["write_verify"]["joules"] > 0


def test_a_realistic_chip_whose_devices_are_not_the_technologys_is_warned_about():
    """The energies use the technology's g_on / g_off; a realistic chip simulating other devices says so, and is
    silent once they agree (set as the warning says)."""
    chip = ChipSettings(DeviceModel(weight_bits=2, device_bits=2, quantize=True, g_max=50.0, on_off_ratio=2.0),
                        CircuitSettings(tile_rows=2).check())
    with pytest.warns(UserWarning, match=r"devices span 25-50 uS .* set g_on=5e-05 g_off=2.5e-05"):
        chip_cost(_two_layers(), chip, technology(), (4,))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chip_cost(_two_layers(), chip, technology(g_on=5e-5, g_off=2.5e-5), (4,))
        chip_cost(_two_layers(), _chip(), technology(), (4,))  # the Gaussian model simulates no conductance


def test_a_grouped_convolution_packs_its_groups_per_array_and_a_module_called_twice_reads_twice():
    """Conv2d(4, 4, 3, groups=4) on 5 x 5 images: four groups of 9 rows and 1 output each on its own inputs; on
    16-row tiles one group per array, which costs four times one group's Conv2d(1, 1, 3) (each group's max |W| is
    the layer's, so the levels agree), read side by side (one group's latency: no accumulation adds with 9 rows on
    16-row tiles, no bias); larger tiles pack groups block-diagonally. A Linear called twice in forward is
    programmed once and read twice."""
    kernel = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.5, -1.0], [0.75, 0.0, 0.5]])
    grouped = nn.Conv2d(4, 4, 3, groups=4, bias=False)
    single = nn.Conv2d(1, 1, 3, bias=False)
    with torch.no_grad():
        grouped.weight.copy_(kernel.expand(4, 1, 3, 3))
        single.weight.copy_(kernel.expand(1, 1, 3, 3))
    chip, tech = _chip(tile_rows=16), technology()
    whole = chip_cost(grouped, chip, tech, (4, 5, 5)).layers[0]
    one = chip_cost(single, chip, tech, (1, 5, 5)).layers[0]
    assert (whole.tiles, whole.adcs, whole.dacs, whole.reads, whole.macs) == (
        4 * one.tiles, 4 * one.adcs, 4 * one.dacs, 9, 4 * one.macs) and one.tiles == 1
    assert whole.energy == pytest.approx({term: 4 * value for term, value in one.energy.items()})
    assert whole.area == pytest.approx({term: 4 * value for term, value in one.area.items()})
    assert whole.latency == pytest.approx(one.latency)
    packed = chip_cost(grouped, _chip(tile_rows=32), tech, (4, 5, 5)).layers[0]
    # 32-row tiles hold floor(32 / 9) = 3 groups block-diagonally (27 rows, 3 outputs: 6 columns), and the last
    # group its own block: 2 arrays of 32 rows each with its DACs, every group's MACs counted once
    assert (packed.tiles, packed.dacs, packed.macs) == (2, 64, 9 * 9 * 4)
    with torch.no_grad():
        biased = nn.Conv2d(4, 4, 3, groups=4, bias=True)
        biased.weight.copy_(grouped.weight)
        alone = nn.Conv2d(1, 1, 3, bias=True)
        alone.weight.copy_(single.weight)
    # 4-row tiles: 3 row tiles per group, 2 partial-sum adds and 1 bias add per output and read, 9 reads: the other
    # three groups' 27 adds each queue on the shared digital lanes
    many, first = (chip_cost(net, _chip(tile_rows=4), tech, shape).layers[0]
                   for net, shape in ((biased, (4, 5, 5)), (alone, (1, 5, 5))))
    assert many.latency == pytest.approx(first.latency + 3 * 27 / tech.digital_lanes / tech.clock)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 4, bias=False)

        def forward(self, x):
            return self.layer(torch.relu(self.layer(x)))

    twice, once = Twice(), nn.Sequential(nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        once[0].weight.copy_(twice.layer.weight)
    double, single_read = chip_cost(twice, chip, tech, (4,)).layers[0], chip_cost(once, chip, tech, (4,)).layers[0]
    assert (double.reads, double.tiles, double.area) == (2, single_read.tiles, single_read.area)
    assert double.energy == pytest.approx({term: 2 * value for term, value in single_read.energy.items()})
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 4, bias=False))
    tied[2].weight = tied[0].weight  # one matrix used by two modules: one array, read twice
    layers = chip_cost(tied, chip, tech, (4,)).layers
    assert [(layer.kind, layer.reads) for layer in layers] == [("crossbar", 2), ("activation", 0)]


def test_neft_cost_refuses_flags_that_do_not_apply_before_any_work(tmp_path, capsys):
    base = ["cost", "--model", "lenet5", "--in-channels", "1", "--out", str(tmp_path / "t")]
    for extra, words in [(["--attach"], "--attach applies to a run directory"),
                         (["--results", "x"], "--results applies to a run directory"),
                         (["--recalibrate-bn", "10"], "lenet5 has no BatchNorm layer"),
                         (["--technology", str(tmp_path / "missing.toml")], "missing.toml does not exist"),
                         (["--technology", str(tmp_path / "keys.tml")], "must end in .toml or .json")]:
        assert main(base + extra) == 2
        assert words in capsys.readouterr().err
    assert main(["cost", str(tmp_path), "--results", "../other/base"]) == 2
    assert "not a path" in capsys.readouterr().err
    assert main(["cost", str(tmp_path / "nowhere")]) == 2
    assert "run directory" in (err := capsys.readouterr().err) and "nowhere does not exist" in err
    assert not (tmp_path / "t").exists() and not (tmp_path / "nowhere").exists()


def test_neft_cost_of_a_model_on_a_chip_preset_costs_the_presets_circuit(tmp_path):
    """--device-model aihwkit-inference costs aihwkit's 512-row tiles, 7-bit DACs and 9-bit ADCs (it costed bare
    devices without converters); a flag written on top wins."""
    base = ["cost", "--model", "lenet5", "--in-channels", "1", "--device-model", "aihwkit-inference"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--adc-bits", "6", "--out", str(tmp_path / "b")]) == 0
    chips = [json.loads((tmp_path / name / "lenet5_cost.json").read_text())["chip"]["circuit"] for name in "ab"]
    assert [(c["tile_rows"], c["dac_bits"], c["adc_bits"]) for c in chips] == [(512, 7, 9), (512, 7, 6)]


def test_a_results_file_chip_is_read_back():
    chip = ChipSettings.of(SimpleNamespace(tile_rows=64, dac_bits=None, adc_bits=5, adc_range=100.0,
                                           adc_mode="sliced", device_model="RRAM1"))
    tech = technology()
    table = chip_cost(_two_layers(), chip, tech, (4,))
    # no DAC on the chip: its inputs are costed at ideal_bits
    assert table.layers[0].energy["dac"] == 4 * tech.dac_fom * 2 ** tech.ideal_bits


def test_the_pareto_front_keeps_the_points_no_other_point_beats(tmp_path):
    from neft.reporting.cost_plots import pareto_front, pareto_fronts, plot_cost

    points = [{"label": name, "energy": energy, "programming": 1.0, "p5": p5, "mean": p5 + 1, "sigma": 0.1}
              for name, energy, p5 in (("a", 1.0, 80.0), ("b", 2.0, 79.0), ("c", 2.0, 85.0), ("d", 3.0, 85.0),
                                       ("e", 4.0, 90.0))]
    assert [p["label"] for p in pareto_front(points, "energy")] == ["a", "c", "e"]
    other = [{**p, "sigma": 0.2, "p5": p["p5"] - 50} for p in points]  # other chips: beaten by none of the first
    fronts = pareto_fronts(points + other, "energy")
    assert [[p["label"] for p in front] for front in fronts.values()] == [["a", "c", "e"], ["a", "c", "e"]]
    assert plot_cost(points + other, tmp_path / "two.png").stat().st_size > 10_000
    assert plot_cost(points, tmp_path / "cost.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="neft cost RUN_DIR --attach"):
        plot_cost([], tmp_path / "none.png")


def test_a_run_directory_is_costed_per_results_file_and_its_report_plots_the_cost(run_dir, tmp_path, capsys):
    import shutil

    from neft import write_report
    from neft.cost.programming import programming_cost

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["evaluate", str(run), "--sigmas", "0.1", "--runs", "2", "--test-subset", "32", "--tile-rows", "64",
                 "--adc-bits", "5", "--dac-bits", "8", "--write-verify", "0.05", "--name", "adc5", "--quiet"]) == 0
    before = sorted(path.name for path in run.rglob("*"))
    for flag in (["--adc-bits", "4"], ["--tile-rows", "32"], ["--width", "0.5"]):  # the results file's chip rules
        assert main(["cost", str(run), "--results", "adc5", *flag]) == 2
        assert "--model only" in capsys.readouterr().err and sorted(p.name for p in run.rglob("*")) == before
    assert main(["cost", str(run), "--results", "adc5", "--out", str(tmp_path / "new" / "tables")]) == 0
    assert (tmp_path / "new" / "tables" / "adc5_cost.json").is_file()  # a missing folder is made
    assert main(["cost", str(run), "--results", "adc5", "--attach"]) == 0
    result = json.loads((run / "adc5.json").read_text())
    table = json.loads((run / "cost" / "adc5_cost.json").read_text())
    assert table["chip"]["circuit"]["adc_bits"] == 5 and result["cost"]["energy_J"] == table["total"]["energy_J"]
    counts = result["deployment_cost"]
    assert counts["write_verify"]["weights_verified"] > 0
    expected = programming_cost(counts, 4, technology(), table["total"]["energy_J"], table["total"]["latency_s"])
    assert result["cost"]["programming"] == expected and expected["write_verify"]["seconds"] > 0
    paths = write_report([run / "adc5.json"], tmp_path / "report")
    assert paths["cost"].name == "report_cost.png" and paths["cost"].stat().st_size > 10_000
    assert result["cost"]["technology"] == technology().to_dict()  # the keys it was costed with
    again = ["cost", str(run), "--results", "adc5", "--attach", "--out", str(tmp_path / "other"), "--set",
             "adc_fom=1e-12"]
    assert main(again) == 2 and "already records a cost" in capsys.readouterr().err  # not replaced unasked
    assert json.loads((run / "adc5.json").read_text())["cost"] == result["cost"]
    assert not (tmp_path / "other").exists()
    assert main(again + ["--overwrite"]) == 0
    shutil.copyfile(run / "adc5.json", run / "low_cost.json")  # a results file whose name ends in _cost
    assert main(["cost", str(run), "--results", "low_cost", "--out", str(tmp_path / "third")]) == 0
    from neft.reporting.cost_plots import cost_points

    mixed = [json.loads((run / "adc5.json").read_text()), result]
    with pytest.warns(UserWarning, match="different technology keys"):
        cost_points(mixed)
    uncosted = {key: value for key, value in result.items() if key != "cost"}
    with pytest.warns(UserWarning, match="1 of 2 results carry no cost and are left off"):
        assert len(cost_points([result, uncosted])) == len(result["per_sigma"])
    assert main(["report", str(run / "adc5.json"), "--out", str(tmp_path / "report2")]) == 0
    assert f"cost plot: {tmp_path / 'report2' / 'report_cost.png'}" in capsys.readouterr().out
    # a damaged results file beside a sound one: named, and nothing written for either
    damaged = json.loads((run / "adc5.json").read_text())
    damaged["deployment_cost"]["mapped_weights"] = -5
    (run / "zz_damaged.json").write_text(json.dumps(damaged))
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    assert main(["cost", str(run), "--attach", "--overwrite", "--out", str(tmp_path / "fourth")]) == 2
    assert "zz_damaged.json" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before
    assert not (tmp_path / "fourth").exists()
    damaged["deployment_cost"] = 3
    (run / "zz_damaged.json").write_text(json.dumps(damaged))
    assert main(["cost", str(run), "--results", "zz_damaged", "--out", str(tmp_path / "fifth")]) == 2
    assert "zz_damaged.json is damaged" in capsys.readouterr().err


def test_level_sum_adds_the_base_2k_digits_of_each_level_by_hand_and_at_24_bits():
    """weight_bits 4, device_bits 2: L = 15, levels of [15, -5, 0, 6] / 15 are 15, 5, 0, 6, in base 4 "33", "11",
    "0", "12": digit sums 6 + 2 + 0 + 3 = 11. An analog 24-bit device (PCM-aihwkit: one digit of 2**24 levels)
    sums the levels themselves, 2**24 - 1 = 16,777,215 of them, without enumerating them."""
    from neft.chip import devices
    from neft.cost.network import level_sum

    model = DeviceModel("d", weight_bits=4, device_bits=2)
    assert level_sum(torch.tensor([15.0, -5.0, 0.0, 6.0]) / 15 * 0.3, model) == 11.0
    weight = torch.tensor([[1.0, -0.5], [0.25, 0.0]])
    top = 2 ** 24 - 1
    expected = top + round(0.5 * top) + round(0.25 * top)
    assert level_sum(weight, devices.get("PCM-aihwkit")) == expected
    with pytest.raises(ValueError, match="NaN or infinite"):  # it hung: inf / inf is NaN, its level INT64_MIN
        level_sum(torch.tensor([1.0, float("inf")]), model)


def test_every_array_has_its_own_adcs_even_when_a_row_tile_spans_many_arrays():
    """An ADC converts the columns of one array: with small tiles the ADCs were counted per row tile, fewer than
    the arrays (lenet5 at 16-row tiles: 1961 arrays, 500 ADCs)."""
    layer = MappedLayer("w", fan_in=32, outputs=10, reads=1, bias=False, level_sum=0.0)
    circuit = CircuitSettings(tile_rows=16, adc_bits=4, adc_mode="sliced").check()
    cost = crossbar_cost(layer, circuit, DeviceModel(weight_bits=4, device_bits=1), technology())
    # n = 4 devices per weight on pairs: 80 columns in 16-column arrays = 5 column tiles x 2 row tiles; each array
    # converts ceil(4 x 10 / 5) = 8 columns with ceil(8 / 8) = 1 ADC
    assert (cost.tiles, cost.adcs) == (10, 10)
    wide = crossbar_cost(layer, circuit, DeviceModel(weight_bits=4, device_bits=1), technology(columns_per_adc=3))
    assert wide.adcs == 10 * 3  # ceil(8 / 3) per array
    # uneven column tiles: 64 rows of 10 outputs on 64-column arrays, 80 columns = 64 + 16: the full array converts
    # 32 columns with 4 ADCs (8 each per cycle), the last 8 with 1; the full array's 8 conversions set the cycle
    layer = MappedLayer("w", fan_in=64, outputs=10, reads=1, bias=False, level_sum=0.0)
    tech = technology()
    uneven = crossbar_cost(layer, CircuitSettings(tile_rows=64, adc_bits=4, adc_mode="sliced").check(),
                           DeviceModel(weight_bits=4, device_bits=1), tech)
    adds = 10 * (4 - 1)  # shift-adds of the 4 slices of 10 outputs, on the layer's 5 ADCs' adders
    assert (uneven.tiles, uneven.adcs) == (2, 5)
    assert uneven.latency == pytest.approx(tech.read_time + 8 / tech.adc_sample_rate + -(-adds // 5) / tech.clock)
