"""neft's IR drop and SAR ADC against CrossSim 3.2's (development machines only: CrossSim is never a dependency and
never runs in CI; docs/method.md, 'IR drop' and 'Converter circuits').

IR drop: the same tile conductances and inputs in both. Each tile is square (``n`` columns x ``n`` rows, the hard case
for the row lines), its conductances ``relu(w) / max|w|`` of Gaussian weights (one array of a differential pair, in
units of g_max), its inputs 8 vectors uniform in [0, 1] (ReLU-like voltages). CrossSim's solver is
``simulator/circuits/array/NonInterleaved_InputSource.py`` (its default topology) with ``Rp_row_norm = Rp_col_norm``
= the ratio, run to a tight tolerance (``Verr_th`` 1e-9) for the reference; neft's is
``neft.chip.ir_drop.effective_conductance``. Reported per (rows, ratio): the drop itself (rms of ideal minus
CrossSim over rms of CrossSim), neft's rms relative error against CrossSim, and the time per matrix-vector product
of CrossSim's solver at its defaults (``Verr_th`` 1e-3, median of 3) against neft's: the effective conductance of
the tile plus one product (a single MVM, median of 5), and per MVM when 1000 products share the tile's effective
conductance (as the images of a batch do on one chip, median of 3). Cases where CrossSim's solver does not converge
within ``--max-iterations`` are marked.

ADC: CrossSim's ``SarADC`` (non-split CDAC, 200 dB amplifier gain: ideal, no comparator offset, ``group_size`` 1)
and neft's ``neft.chip.adc_circuit`` SAR with the same capacitor mismatch sigma, each over ``--adcs`` converters, on
a fine ramp through the full scale (CrossSim draws one set of capacitor errors per core, shared by its SARs: one
core per converter here): the code histograms' differential nonlinearity (rms and worst over the codes, in LSB) and
the fraction of missing codes, with and without a 0.5-LSB offset.

Setup (once)::

    git clone https://github.com/sandialabs/cross-sim .crosssim && git -C .crosssim checkout 0a2eb1e  # 3.2.0
    python benchmarks/ir_drop_vs_crosssim.py [--rows 64,128,256,512] [--ratios 1e-5,1e-4,1e-3] [--adcs 64]

CrossSim needs numpy and scipy only (both come with neft's test environment); ``.crosssim`` is git-ignored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neft.chip import adc_circuit, ir_drop


def crosssim(path: Path):
    """CrossSim's array solver class and parameters (its CPU backend)."""
    sys.path.insert(0, str(path))
    from simulator.backend import ComputeBackend

    ComputeBackend(use_gpu=False)
    from simulator.circuits.array import NoninterleavedInputSourceArray
    from simulator.parameters import CrossSimParameters

    return NoninterleavedInputSourceArray, CrossSimParameters


def crosssim_solve(array, g: np.ndarray, x: np.ndarray, ratio: float, tolerance: float, iterations: int):
    """CrossSim's column currents ``[m, B]`` of conductances ``g`` ``[m, n]`` on inputs ``x`` ``[n, B]`` (one
    attempt at gamma 1: None when it does not converge)."""
    array.Rp_in_mat = array.Rp_out_mat = None
    array.Rp_row_norm = array.Rp_col_norm = ratio
    array.Verr_th, array.Niters_max, array.gamma = tolerance, iterations, 1.0
    try:
        return np.asarray(array.solve_mvm(x, g)).reshape(g.shape[0], -1)
    except (RuntimeError, FloatingPointError):
        return None


def seconds(function, repeats: int = 3) -> float:
    """Median wall-clock seconds of ``function()``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def ir_drop_rows(array, rows: list[int], ratios: list[float], iterations: int) -> None:
    rng = np.random.default_rng(0)
    print(f"{'rows':>5} {'ratio':>7} {'drop':>8} {'neft err':>9} {'r n^2':>7} {'CrossSim s/MVM':>15} "
          f"{'neft s/MVM':>11} {'speed-up':>9} {'neft s/MVM, 1000':>17} {'speed-up':>9}")
    with np.errstate(all="ignore"):
        for n in rows:
            w = rng.standard_normal((n, n))
            g = np.maximum(w, 0) / np.abs(w).max()
            x = rng.uniform(0, 1, (n, 8))
            gt, xt = torch.tensor(g, dtype=torch.float32), torch.tensor(x[:, 0], dtype=torch.float32)
            batch = torch.rand(n, 1000, dtype=torch.float32)  # 1000 products through one tile's drop
            for ratio in ratios:
                reference = crosssim_solve(array, g, x, ratio, 1e-9, iterations)
                fast = (ir_drop.effective_conductance(torch.tensor(g), ratio).numpy() @ x)
                if reference is None:
                    print(f"{n:5d} {ratio:7.0e} {'-':>8} {'-':>9} {ratio * n * n:7.2f}  CrossSim does not converge "
                          f"in {iterations} iterations at gamma 1")
                    continue
                drop = np.sqrt(((g @ x - reference) ** 2).mean() / (reference ** 2).mean())
                error = np.sqrt(((fast - reference) ** 2).mean() / (reference ** 2).mean())
                theirs = seconds(lambda: crosssim_solve(array, g, x[:, :1], ratio, 1e-3, iterations), 3)
                ours = seconds(lambda: ir_drop.effective_conductance(gt, ratio) @ xt, 5)
                many = seconds(lambda: ir_drop.effective_conductance(gt, ratio) @ batch, 3) / 1000
                print(f"{n:5d} {ratio:7.0e} {drop:8.2%} {error:9.2e} {ratio * n * n:7.2f} {theirs:15.2e} "
                      f"{ours:11.2e} {theirs / ours:8.0f}x {many:17.2e} {theirs / many:8.0f}x", flush=True)


def dnl(codes: np.ndarray, bits: int) -> tuple[float, float, float]:
    """rms and worst |DNL| (LSB) over the inner codes, and the fraction of missing codes, of ``codes`` ``[adcs,
    ramp]`` from a uniform ramp over the full scale."""
    stats = []
    for row in codes:
        counts = np.bincount(row.astype(np.int64) + 2 ** (bits - 1), minlength=2 ** bits)[1:-1].astype(float)
        width = counts / counts.mean() - 1
        stats.append((np.sqrt((width ** 2).mean()), np.abs(width).max(), (counts == 0).mean()))
    return tuple(float(v) for v in np.mean(stats, axis=0))


def adc_rows(path: Path, adcs: int, bits: int, sigmas: list[float]) -> None:
    from simulator.circuits.adc.sar_adc import SarADC
    from simulator.parameters import CrossSimParameters
    from simulator.parameters.xbar_parameters import ADCRangeLimits

    half = 2 ** (bits - 1)
    ramp = np.linspace(-half - 0.5, half - 0.5, 2 ** bits * 64, endpoint=False) + 1 / 128  # in LSB, 64 per code
    print(f"\nSAR ADC, {bits} bits, {adcs} converters, a ramp of 64 points per code: rms |DNL|, worst |DNL| (LSB, mean "
          f"over converters), missing codes")
    print(f"{'sigma_C':>8} {'offset':>7} {'CrossSim rms':>13} {'worst':>7} {'missing':>8} {'neft rms':>9} {'worst':>7} "
          f"{'missing':>8}")
    for sigma in sigmas:
        for offset in (0.0, 0.5):
            params = CrossSimParameters()
            params.xbar.adc.mvm.model = "SarADC"
            adc = params.xbar.adc.mvm
            adc.bits, adc.sigma_capacitor, adc.split_cdac, adc.group_size, adc.gain_db = bits, sigma, False, 1, 200
            adc.sigma_comparator = 0.0
            adc.adc_range_option = ADCRangeLimits.CALIBRATED
            adc.calibrated_range = [-1.0, 1.0]
            lsb = 2.0 / 2 ** bits
            theirs = []
            for draw in range(adcs):  # one CrossSim draw of capacitor errors per core: one core per converter here
                np.random.seed(draw)
                converter = SarADC(adc, params.xbar.dac.mvm, params.core, params.simulation, 0)
                converter.set_limits(np.zeros((len(ramp), 4)))  # one (identical) SAR per ramp point
                theirs.append(converter.convert((ramp + offset) * lsb))
            theirs = np.stack(theirs)
            theirs = np.round(theirs / lsb - 0.5)  # mid-rise levels -> codes -half .. half - 1
            errors = adc_circuit.draw(7, 0, 1, adcs, bits, offset, 0.0, 0.0, sigma)
            x = torch.tensor(ramp, dtype=torch.float32).view(1, -1)
            weights = errors.weights[0] if errors.weights is not None else (2.0 ** torch.arange(bits)).expand(adcs, -1)
            ours = adc_circuit.sar_codes(x + offset, weights.reshape(adcs, 1, bits), bits).numpy()
            c, o = dnl(theirs, bits), dnl(ours, bits)
            print(f"{sigma:8.3f} {offset:7.2f} {c[0]:13.3f} {c[1]:7.3f} {c[2]:8.2%} {o[0]:9.3f} {o[1]:7.3f} "
                  f"{o[2]:8.2%}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crosssim", default=str(Path(__file__).resolve().parent.parent / ".crosssim"),
                        help="CrossSim's source checkout (default .crosssim in the repository)")
    parser.add_argument("--rows", default="64,128,256,512", help="tile sizes (rows = columns)")
    parser.add_argument("--ratios", default="1e-5,3e-5,1e-4,3e-4,1e-3", help="wire over device resistance")
    parser.add_argument("--max-iterations", type=int, default=3000, help="CrossSim solver iterations (3000)")
    parser.add_argument("--adcs", type=int, default=64, help="converters per ADC histogram (64)")
    parser.add_argument("--adc-bits", type=int, default=6)
    parser.add_argument("--sigmas", default="0,0.02,0.05,0.1", help="capacitor mismatch sigmas")
    parser.add_argument("--skip", choices=("ir", "adc"), default=None)
    args = parser.parse_args()
    path = Path(args.crosssim)
    if not (path / "simulator").is_dir():
        sys.exit(f"CrossSim is not at {path} (see this script's docstring for the one-line setup)")
    torch.set_num_threads(1)
    array_class, parameters = crosssim(path)
    if args.skip != "ir":
        ir_drop_rows(array_class(parameters()), [int(v) for v in args.rows.split(",")],
                     [float(v) for v in args.ratios.split(",")], args.max_iterations)
    if args.skip != "adc":
        adc_rows(path, args.adcs, args.adc_bits, [float(v) for v in args.sigmas.split(",")])


if __name__ == "__main__":
    main()
