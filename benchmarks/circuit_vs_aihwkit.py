"""neft's crossbar circuit beside IBM aihwkit's periphery on the same small layer (docs/method.md, 'The crossbar
circuit').

One ``nn.Linear(256, 32)`` with fixed random weights reads 512 non-negative inputs (post-ReLU activations), split
into tiles of 64 rows: neft with ``tile_rows=64``, ``dac_bits=b``, ``adc_bits=b`` (ranges calibrated on the same
inputs, maximum), aihwkit 1.2 with ``TorchInferenceRPUConfig``, ``mapping.max_input_size=64``,
``forward.inp_res = out_res = 1 / (2**b - 2)`` and every noise, bound management and weight scaling off. Printed
per b: the relative RMS error of each against the float layer, and their difference. Where the semantics differ:

* DAC: aihwkit's ``noise_management="abs_max"`` rescales every input vector by its own max|x| before the DAC (a
  dynamic range per image, inputs in [-1, 1], ``2 / inp_res + 1`` levels); neft's DAC has one static full scale
  per layer, calibrated on clean activations, unsigned for non-negative inputs (``2**b`` levels).
* ADC: aihwkit's output range is fixed, ``+-out_bound`` (12) in units of the normalised input times the weight,
  with ``2 * out_bound / out_res`` levels; neft calibrates a full scale per layer and tile from clean partial sums
  (``2**b`` two's-complement codes), so its codes cover the sums that occur.
* Tiles: both split the input dimension into tiles of at most 64 rows and add the tiles' digitised outputs.

aihwkit is never a dependency of neft: the script exits with a message where it is not installed (a CPU wheel for
development machines: see the project's development notes).

    python benchmarks/circuit_vs_aihwkit.py            # in an environment with aihwkit
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from neft import Crossbar
from neft.chip import Circuit, CircuitSettings


def relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().mean().sqrt() / b.square().mean().sqrt())


def aihwkit_layer(layer: nn.Linear, bits: int, tile_rows: int):
    from aihwkit.nn import AnalogLinear
    from aihwkit.simulator.configs import TorchInferenceRPUConfig
    from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType

    config = TorchInferenceRPUConfig()
    config.mapping.max_input_size = tile_rows
    config.mapping.weight_scaling_omega = 0.0
    config.forward.inp_res = config.forward.out_res = 1 / (2 ** bits - 2)
    config.forward.out_noise = 0.0
    config.forward.inp_noise = 0.0
    config.forward.w_noise = 0.0
    config.forward.bound_management = BoundManagementType.NONE
    config.forward.noise_management = NoiseManagementType.ABS_MAX
    analog = AnalogLinear(layer.in_features, layer.out_features, bias=True, rpu_config=config)
    analog.set_weights(layer.weight.detach(), layer.bias.detach())
    return analog.eval()


def main() -> None:
    try:
        import aihwkit
    except ImportError:
        print("aihwkit is not installed here: nothing to compare (neft never depends on it)")
        sys.exit(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    layer = nn.Linear(256, 32).eval()
    x = torch.randn(512, 256).relu()
    with torch.no_grad():
        clean = layer(x)
    print(f"aihwkit {aihwkit.__version__}, torch {torch.__version__}: Linear(256, 32), 512 inputs >= 0, 64-row tiles")
    print(f"{'bits':>4} {'neft rel. RMS error':>20} {'aihwkit rel. RMS error':>23} {'neft vs aihwkit':>16}")
    for bits in (4, 6, 8, 12):
        circuit = Circuit(Crossbar(layer), CircuitSettings(tile_rows=64, dac_bits=bits, adc_bits=bits))
        circuit.calibrate(x)
        with torch.no_grad(), circuit.applied():
            ours = layer(x)
        with torch.no_grad():
            theirs = aihwkit_layer(layer, bits, 64)(x)
        print(f"{bits:>4} {relative_rms(ours, clean):>20.4f} {relative_rms(theirs, clean):>23.4f} "
              f"{relative_rms(ours, theirs):>16.4f}")
    print("relative RMS error = RMS(out - float) / RMS(float); see the docstring for where the semantics differ")


if __name__ == "__main__":
    main()
