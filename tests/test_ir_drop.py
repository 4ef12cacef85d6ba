"""IR drop on crossbar tiles (docs/method.md, 'IR drop'): the exact node-equation solver against resistor networks
written out here, the fast approximation against the solver, monotonicity, zero conductance, and the circuit."""

import pytest
import torch
from torch import nn

from neft.chip import ir_drop
from neft.chip.circuit import Circuit
from neft.chip.circuit_settings import CircuitSettings
from neft.chip.crossbar import Crossbar
from neft.chip.device_model import DeviceModel
from neft.common.errors import SettingError
from neft.evaluation import montecarlo


def network_currents(resistors, sources, nodes, ground_currents):
    """Node voltages of a linear resistor network by nodal analysis, from its netlist: ``resistors`` are
    ``(a, b, conductance)`` with node -1 the ground, ``sources`` ``{node: voltage}`` ideal sources to ground; returns
    the current into ground through each resistor of ``ground_currents`` (indices into ``resistors``)."""
    index = {node: k for k, node in enumerate(n for n in nodes if n not in sources)}
    a = torch.zeros(len(index), len(index), dtype=torch.float64)
    b = torch.zeros(len(index), dtype=torch.float64)
    for p, q, g in resistors:
        for u, v in ((p, q), (q, p)):
            if u in index:
                a[index[u], index[u]] += g
                if v in index:
                    a[index[u], index[v]] -= g
                elif v in sources:
                    b[index[u]] += g * sources[v]
    v = torch.linalg.solve(a, b)

    def voltage(node):
        return 0.0 if node == -1 else sources[node] if node in sources else float(v[index[node]])
    return [resistors[k][2] * (voltage(resistors[k][0]) - voltage(resistors[k][1])) for k in ground_currents]


def crossbar_netlist(g, x, r):
    """The netlist of an m x n array (CrossSim's default non-interleaved, input-source topology): source ``("in",
    j)`` drives row j from the column-0 end, column i is grounded after row n-1; returns (resistors, sources, nodes,
    the indices of each column's last segment)."""
    m, n = g.shape
    w = 1 / r
    resistors, last = [], []
    for j in range(n):
        resistors.append((("in", j), ("row", 0, j), w))
        for i in range(1, m):
            resistors.append((("row", i - 1, j), ("row", i, j), w))
    for i in range(m):
        for j in range(n):
            resistors.append((("row", i, j), ("col", i, j), float(g[i, j])))
            if j < n - 1:
                resistors.append((("col", i, j), ("col", i, j + 1), w))
        last.append(len(resistors))
        resistors.append((("col", i, n - 1), -1, w))
    sources = {("in", j): float(x[j]) for j in range(n)}
    nodes = {node for p, q, _ in resistors for node in (p, q) if node != -1}
    return resistors, sources, nodes, last


def test_one_cell_is_a_series_circuit():
    # one device between two wire segments: I = x / (1/G + 2r)
    g, x, r = 0.7, 0.9, 0.05
    current = ir_drop.solve(torch.tensor([[g]], dtype=torch.float64), torch.tensor([x], dtype=torch.float64), r)
    assert float(current[0]) == pytest.approx(x / (1 / g + 2 * r), abs=1e-12)


def test_two_by_two_array_written_out():
    # the 2 x 2 array by hand: 8 nodes, Kirchhoff's law at each (w = 1/r), outputs I_i = w * C_i1
    g = torch.tensor([[0.8, 0.3], [0.5, 1.0]], dtype=torch.float64)
    x = torch.tensor([0.6, 1.0], dtype=torch.float64)
    r = 0.1
    w = 1 / r
    (g00, g01), (g10, g11) = g.tolist()
    # unknowns: R00 R01 R10 R11 (row line at column i, row j), C00 C01 C10 C11 (column i at row j)
    a = torch.tensor([
        [2 * w + g00, 0, -w, 0, -g00, 0, 0, 0],        # R00: w(x0 - R00) = w(R00 - R10) + g00(R00 - C00)
        [0, 2 * w + g01, 0, -w, 0, -g01, 0, 0],        # R01
        [-w, 0, w + g10, 0, 0, 0, -g10, 0],            # R10: w(R00 - R10) = g10(R10 - C10)
        [0, -w, 0, w + g11, 0, 0, 0, -g11],            # R11
        [-g00, 0, 0, 0, g00 + w, -w, 0, 0],            # C00: g00(R00 - C00) = w(C00 - C01)
        [0, -g01, 0, 0, -w, g01 + 2 * w, 0, 0],        # C01: g01(R01 - C01) + w(C00 - C01) = w C01
        [0, 0, -g10, 0, 0, 0, g10 + w, -w],            # C10
        [0, 0, 0, -g11, 0, 0, -w, g11 + 2 * w],        # C11
    ], dtype=torch.float64)
    b = torch.tensor([w * x[0], w * x[1], 0, 0, 0, 0, 0, 0], dtype=torch.float64)
    v = torch.linalg.solve(a, b)
    expected = torch.stack([w * v[5], w * v[7]])
    assert torch.allclose(ir_drop.solve(g, x, r), expected, rtol=0, atol=1e-9)
    assert (expected < g @ x).all()  # the drop lowers both columns' currents


def test_three_by_three_array_against_its_netlist():
    g = torch.tensor([[0.9, 0.0, 0.4], [0.2, 1.0, 0.7], [0.6, 0.3, 0.1]], dtype=torch.float64)
    x = torch.tensor([1.0, -0.5, 0.8], dtype=torch.float64)
    r = 0.07
    expected = network_currents(*crossbar_netlist(g, x, r))
    assert torch.allclose(ir_drop.solve(g, x, r), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)


def test_currents_fall_monotonically_with_the_wire_resistance():
    g = torch.rand(6, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = torch.rand(7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ratios = [0.0, 1e-4, 1e-3, 1e-2, 3e-2]
    exact = torch.stack([ir_drop.solve(g, x, r) for r in ratios])
    fast = torch.stack([ir_drop.effective_conductance(g, r) @ x for r in ratios])
    for currents in (exact, fast):
        assert (currents.diff(dim=0) < 0).all()
    assert torch.equal(exact[0], g @ x)


def test_zero_conductance_draws_no_current():
    zero = torch.zeros(4, 5, dtype=torch.float64)
    x = torch.rand(5, dtype=torch.float64)
    assert torch.equal(ir_drop.solve(zero, x, 0.05), torch.zeros(4, dtype=torch.float64))
    assert torch.equal(ir_drop.effective_conductance(zero, 0.05), zero)


def test_fast_approximation_against_the_exact_solver():
    # 8 columns x 24 rows, conductances like |w|/max|w| of Gaussian weights, inputs like ReLU activations
    generator = torch.Generator().manual_seed(3)
    w = torch.randn(8, 24, generator=generator, dtype=torch.float64)
    g = w.clamp_min(0) / w.abs().max()
    x = torch.rand(5, 24, generator=generator, dtype=torch.float64)

    def error(r):
        exact = ir_drop.solve(g, x, r)
        fast = x @ ir_drop.effective_conductance(g, r).T
        return float(((fast - exact).square().mean() / exact.square().mean()).sqrt())

    def drop(r):
        exact = ir_drop.solve(g, x, r)
        return float(((x @ g.T - exact).square().mean() / exact.square().mean()).sqrt())
    assert 0.05 < drop(3e-3) < 0.2  # a drop that matters
    assert error(3e-3) < 0.005  # 0.5 % rms (benchmarks/README.md measures 64-512 rows against CrossSim)
    assert error(1e-4) < 3 * error(3e-3) / 30 ** 2  # what it neglects is second order in the ratio


def test_tile_weight_is_the_difference_of_two_arrays():
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(5, 9, generator=generator, dtype=torch.float64)
    x = torch.rand(9, generator=generator, dtype=torch.float64)
    unit, r = float(weight.abs().max()), 2e-3
    effective = ir_drop.tile_weight(weight, unit, r, (0, 9))
    plus, minus = weight.clamp_min(0) / unit, (-weight).clamp_min(0) / unit
    exact = unit * (ir_drop.solve(plus, x, r) - ir_drop.solve(minus, x, r))
    assert torch.allclose(effective @ x, exact, rtol=1e-4, atol=1e-6)
    part = ir_drop.tile_weight(weight, unit, r, (2, 6))  # rows 2..5 on this tile: a 4-row array
    assert not part[:, :2].any() and not part[:, 6:].any()
    assert torch.allclose(part[:, 2:6], ir_drop.tile_weight(weight[:, 2:6], unit, r, (0, 4)))


def linear_circuit(weight, **settings):
    model = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.zero_()
    return model, Circuit(Crossbar(model, DeviceModel()), CircuitSettings(**settings))


def test_the_circuit_reads_each_tile_through_its_ir_drop_and_trains_through_it():
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(6, 40, generator=generator)
    x = torch.rand(3, 40, generator=generator)
    model, circuit = linear_circuit(weight, tile_rows=16, wire_resistance=1e-3)
    with circuit.applied():
        out = model(x)
    unit = float(weight.abs().max())
    expected = sum(x[:, r0:r1] @ ir_drop.tile_weight(weight[:, r0:r1], unit, 1e-3, (0, r1 - r0)).T
                   for r0, r1 in ((0, 16), (16, 32), (32, 40)))
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, x @ weight.T, atol=1e-3)  # the drop changes the outputs
    with circuit.applied():
        model(x).square().sum().backward()
    assert torch.isfinite(model.weight.grad).all() and model.weight.grad.abs().sum() > 0
    zero, circuit = linear_circuit(torch.zeros(6, 40), tile_rows=16, wire_resistance=1e-3)
    with circuit.applied():
        assert torch.equal(zero(x), torch.zeros(3, 6))  # all-zero conductances: no current


def test_ir_drop_in_monte_carlo_is_independent_of_chips_per_pass_and_off_is_bit_identical(lenet):
    model, images, labels, _ = lenet
    options = {"runs": 3, "progress": False, "precision": "fp32", "compile": False, "memory_format": "contiguous"}

    def per_run(**settings):
        return montecarlo.evaluate(model, images, labels, [0.2], **options, **settings)["per_sigma"][0]
    plain = per_run(tile_rows=32)["accuracy"]["per_run"]
    assert per_run(tile_rows=32, wire_resistance=0.0)["accuracy"]["per_run"] == plain
    dropped = per_run(tile_rows=32, wire_resistance=3e-4)
    assert per_run(tile_rows=32, wire_resistance=3e-4, chips_per_pass=3)["accuracy"] == dropped["accuracy"]
    assert dropped["ekl"] != per_run(tile_rows=32)["ekl"]


@pytest.mark.parametrize("settings, setting", [
    ({"tile_rows": 64, "wire_resistance": -1e-4}, "wire_resistance"),
    ({"tile_rows": 64, "wire_resistance": 0.2}, "wire_resistance"),
    ({"tile_rows": 64, "wire_resistance": float("nan")}, "wire_resistance"),
    ({"wire_resistance": 1e-4}, "wire_resistance"),  # IR drop without tiles
])
def test_bad_wire_resistance_names_the_setting(settings, setting):
    with pytest.raises(SettingError) as error:
        montecarlo.EvalConfig(**settings).check()
    assert error.value.setting == setting


def test_a_drop_beyond_the_approximation_warns_naming_the_tile():
    generator = torch.Generator().manual_seed(6)
    weight = torch.randn(64, 64, generator=generator)
    with pytest.warns(RuntimeWarning, match=r"tile 0 of '0.weight' keeps"):
        linear = nn.Sequential(nn.Linear(64, 64))
        with torch.no_grad():
            linear[0].weight.copy_(weight)
        Circuit(Crossbar(linear, DeviceModel()), CircuitSettings(tile_rows=64, wire_resistance=1e-2))
    model, circuit = linear_circuit(weight, tile_rows=64, wire_resistance=1e-4)  # r n^2 = 0.4: no warning
    kept = ir_drop.check_validity(circuit.layers, 1e-4, DeviceModel(), ["weight"])
    assert 0.9 < kept < 1.0


def test_a_convolution_reads_each_tile_through_its_ir_drop_where_tiles_split_a_kernel():
    # 3 channels x 3 x 3 = 27 rows on 16-row tiles: tile 0 holds rows 0-15 (channel 1 in part), tile 1 rows 16-26
    torch.manual_seed(7)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.rand(2, 3, 6, 6)
    circuit = Circuit(Crossbar(nn.Sequential(conv), DeviceModel()), CircuitSettings(tile_rows=16, wire_resistance=2e-3))
    with circuit.applied():
        out = conv(x)
    columns = nn.functional.unfold(x, 3, padding=1)  # [B, 27, positions], rows in weight.flatten(1) order
    flat, unit = conv.weight.detach().flatten(1), float(conv.weight.detach().abs().max())
    effective = torch.cat([ir_drop.tile_weight(flat[:, r0:r1], unit, 2e-3, (0, r1 - r0)) for r0, r1 in
                           ((0, 16), (16, 27))], 1)
    expected = (effective @ columns).view(2, 4, 6, 6) + conv.bias.detach().view(1, -1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)
