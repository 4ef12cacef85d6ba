"""neft against IBM aihwkit, side by side in one process: Monte Carlo evaluation and one noise-injection training step.

aihwkit (https://github.com/IBM/aihwkit) is the simulator hardware researchers otherwise use for analog in-memory
computing. This script is a development-only comparison: aihwkit is never a dependency of neft and never runs in
CI; without it the script prints why it is skipped and exits 0 (benchmarks/README.md says how to build it).

The same trained network (LeNet-5 and VGG8 width 0.25, a few hundred Adam steps on Fashion-MNIST) is evaluated
by both tools under the same Gaussian programming noise, neft's RRAM1 device model at ``--sigma``
(``dW = std * z``, ``std = 0.77763 * sigma * max|W|`` per layer, 8 weight bits on four 2-bit devices; docs/method.md,
'Device variation model'). aihwkit is configured so that nothing else differs: ``TorchInferenceRPUConfig`` with
``MappingParameter(digital_bias=True, weight_scaling_omega=0, max_input_size=0, max_output_size=0)`` (one tile per
layer, no weight rescaling, biases digital, as neft maps weights only), ``IOParameters(is_perfect=True)`` (no DAC/ADC
quantisation, no read noise), no drift compensation, clipping, remapping or modifiers, and its programming noise
replaced by a ``BaseNoiseModel`` subclass that adds the same Gaussian:

* ``same draws``: each chip's draw is neft's own (``Crossbar.sample_chip`` from ``run_seed(seed, sigma, r)``), so
  every chip's accuracy must equal neft's; the script reports the largest per-chip difference.
* ``own draws`` (what is timed): aihwkit programs every chip itself (``program_analog_weights``) with the same
  Gaussian drawn from torch's global generator; the accuracy distributions over chips are compared with Welch's
  t-test (means), Levene's test (spreads) and a two-sample Kolmogorov-Smirnov test, and called in agreement when
  all three p-values exceed 0.01.

How the noise models differ otherwise: aihwkit's shipped models (``PCMLikeNoiseModel``, the default, and
``StateIndependentNoiseModel``) program conductances of a differential device pair through a conductance converter
(``g_min``..``g_max``), with a polynomial or constant std in conductance units, and add read noise and drift over
time; on a single-pair converter with ``g_min = 0`` the noise of the device holding zero is clamped at 0, which
pulls weights toward 0. neft draws an additive Gaussian on the weight itself, its std set by the device bits and the
layer's max|W|, frozen per chip. The matched model above removes those differences so the timing compares engines,
not noise models.

Timing: chip-images/s = chips x test images / seconds; each round times neft's ``montecarlo.evaluate`` (fp32,
default settings otherwise: one chip per pass, channels_last, eager at these sizes) and aihwkit's loop (program all
tiles, then the test set in batches under ``torch.no_grad()``) alternately, after one untimed warm-up of each; the
table gives the median over ``--rounds``, for each ``--threads`` value. The training step: one noise-injection step
(batch 128, fresh Gaussian weight noise per forward, cross-entropy, backward, Adam) with
``neft.training.objectives.NoiseInjection`` against aihwkit's hardware-aware training noise
``WeightModifierParameter(ADD_NORMAL, std_dev=0.77763 * sigma, rel_to_actual_wmax=True)`` (the same std relative to
max|W|) with ``AnalogAdam``; median images/s over ``--steps`` alternating steps.

Examples::

    python benchmarks/vs_aihwkit.py                       # both networks, 1 thread (~5 min on a quiet machine)
    python benchmarks/vs_aihwkit.py --threads 1,2         # and with 2 threads
    python benchmarks/vs_aihwkit.py --quick               # LeNet-5 only, 1 thread, fewer chips
    python benchmarks/vs_aihwkit.py --models vgg8:0.25 --chips 20 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

import torch
from torch.nn import functional as F

try:
    from aihwkit.inference.noise.base import BaseNoiseModel
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.optim import AnalogAdam
    from aihwkit.simulator.configs import TorchInferenceRPUConfig
    from aihwkit.simulator.parameters.inference import WeightModifierParameter, WeightModifierType
    from aihwkit.simulator.parameters.io import IOParameters
    from aihwkit.simulator.parameters.mapping import MappingParameter
except ImportError as error:  # pragma: no cover - the usual case: aihwkit is not installed
    print(f"vs_aihwkit.py: skipped: aihwkit is not installed ({error}); it is a development-only comparison, "
          "build it from its source distribution as benchmarks/README.md describes ('neft against aihwkit')")
    sys.exit(0)

from montecarlo import load_data, quick_train  # noqa: E402 - the sibling benchmark's data and training helpers

from neft import Crossbar, make_generator, models, run_seed  # noqa: E402
from neft.chip import devices
from neft.evaluation import montecarlo
from neft.training import objectives

RRAM1 = devices.get("RRAM1")


class GaussianDraw(BaseNoiseModel):
    """aihwkit programming noise = neft's additive Gaussian: ``weights + std * z``.

    ``draw``: a fixed ``dW`` shaped like the tile's weights (``same draws``), or None: ``z`` from torch's global
    generator with neft's RRAM1 std at ``sigma`` (``own draws``). No drift coefficients, no read noise.
    """

    def __init__(self, sigma: float, draw: torch.Tensor | None = None):
        super().__init__()
        self.sigma, self.draw = sigma, draw

    @torch.no_grad()
    def apply_programming_noise(self, weights):
        noise = self.draw if self.draw is not None else torch.randn_like(weights) * RRAM1.std(weights, self.sigma)
        return weights + noise.reshape(weights.shape), []


def rpu_config(sigma: float = 0.0, modifier: WeightModifierParameter | None = None, noise_model=None,
               drift_compensation=None) -> TorchInferenceRPUConfig:
    """aihwkit with nothing but the Gaussian weight noise (see the module docstring), or ``noise_model`` (an
    aihwkit noise model) and ``drift_compensation`` instead: one tile per layer, no rescaling, digital biases,
    perfect periphery (benchmarks/pcm_vs_aihwkit.py)."""
    return TorchInferenceRPUConfig(
        mapping=MappingParameter(digital_bias=True, weight_scaling_omega=0.0, max_input_size=0, max_output_size=0),
        forward=IOParameters(is_perfect=True), noise_model=noise_model or GaussianDraw(sigma),
        drift_compensation=drift_compensation, modifier=modifier or WeightModifierParameter())


def tiles(analog):
    """``{neft weight name: the layer's aihwkit tile}`` (one tile per layer)."""
    return {f"{name}.weight": next(iter(layer.analog_tiles())) for name, layer in analog.named_analog_layers()}


def accuracy(model, images, labels, batch_size: int) -> float:
    with torch.no_grad():
        correct = sum(int((model(images[s:s + batch_size]).argmax(1) == labels[s:s + batch_size]).sum())
                      for s in range(0, len(labels), batch_size))
    return 100.0 * correct / len(labels)


def aihwkit_same_draws(analog, crossbar, images, labels, args) -> list[float]:
    """Per-chip accuracies (%) of aihwkit with every chip's draw taken from neft's generators."""
    result, named = [], tiles(analog)
    for r in range(args.chips):
        chip = crossbar.sample_chip(args.sigma, make_generator(run_seed(args.seed, args.sigma, r)))
        for name, tile in named.items():
            tile.program_weights(noise_model=GaussianDraw(args.sigma, chip[name]))
        result.append(accuracy(analog, images, labels, args.batch_size))
    return result


def aihwkit_own_draws(analog, images, labels, args) -> list[float]:
    """Per-chip accuracies (%) of aihwkit programming every chip itself (``program_analog_weights``)."""
    for tile in tiles(analog).values():
        tile.rpu_config.noise_model = GaussianDraw(args.sigma)
    result = []
    for _ in range(args.chips):
        analog.program_analog_weights()
        result.append(accuracy(analog, images, labels, args.batch_size))
    return result


def neft_engine(model, images, labels, args) -> list[float]:
    result = montecarlo.evaluate(model, images, labels, [args.sigma], runs=args.chips, seed=args.seed,
                                 batch_size=args.batch_size, precision="fp32", progress=False)
    return result["per_sigma"][0]["accuracy"]["per_run"]


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def agreement(a: list[float], b: list[float]) -> dict:
    """p-values of Welch's t-test, Levene's test and the two-sample KS test between two accuracy samples."""
    from scipy import stats

    return {"welch": stats.ttest_ind(a, b, equal_var=False).pvalue, "levene": stats.levene(a, b).pvalue,
            "ks": stats.ks_2samp(a, b).pvalue}


def bench_evaluation(name, width, model, images, labels, args) -> list[dict]:
    analog = convert_to_analog(copy.deepcopy(model), rpu_config(args.sigma)).eval()
    crossbar = Crossbar(model)
    same = aihwkit_same_draws(analog, crossbar, images, labels, args)
    reference = neft_engine(model, images, labels, args)
    worst = max(abs(a - b) for a, b in zip(same, reference))
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        torch.manual_seed(args.seed)
        neft_engine(model, images, labels, args)  # warm-up of both
        aihwkit_own_draws(analog, images, labels, args)
        times = {"neft": [], "aihwkit": []}
        samples = {"neft": [], "aihwkit": []}
        for r in range(args.rounds):
            order = [("neft", lambda: neft_engine(model, images, labels, args)),
                     ("aihwkit", lambda: aihwkit_own_draws(analog, images, labels, args))]
            for key, fn in (order if r % 2 == 0 else order[::-1]):
                seconds, values = timed(fn)
                times[key].append(seconds)
                samples[key] = values
        p = agreement(samples["neft"], samples["aihwkit"])
        rate = {key: args.chips * len(labels) / statistics.median(times[key]) for key in times}
        rows.append({"model": f"{name} w{width:g}", "chips": args.chips, "threads": threads, "neft": rate["neft"],
                     "aihwkit": rate["aihwkit"], "ratio": rate["neft"] / rate["aihwkit"],
                     "neft_mean": statistics.mean(samples["neft"]), "aihwkit_mean": statistics.mean(samples["aihwkit"]),
                     "neft_std": statistics.stdev(samples["neft"]), "aihwkit_std": statistics.stdev(samples["aihwkit"]),
                     "same_draw_max_diff": worst, **p, "agree": min(p.values()) > 0.01})
    return rows


def bench_training(name, width, model, x, y, args) -> list[dict]:
    std_dev = float(RRAM1.std(torch.ones(1), args.sigma))  # neft's std relative to max|W| (0.77763 * sigma)
    modifier = WeightModifierParameter(type=WeightModifierType.ADD_NORMAL, std_dev=std_dev, rel_to_actual_wmax=True)
    ours = copy.deepcopy(model).train()
    objective = objectives.create("noise-injection", ours, x, 10, sigma=args.sigma, generator=make_generator(args.seed))
    ours_opt = torch.optim.Adam(ours.parameters(), lr=1e-3)
    analog = convert_to_analog(copy.deepcopy(model), rpu_config(args.sigma, modifier)).train()
    analog_opt = AnalogAdam(analog.parameters(), lr=1e-3)
    analog_opt.regroup_param_groups(analog)

    def neft_step():
        ours_opt.zero_grad(set_to_none=True)
        objective.loss(ours, x, y)[0].backward()
        ours_opt.step()

    def aihwkit_step():
        analog_opt.zero_grad()
        F.cross_entropy(analog(x), y).backward()
        analog_opt.step()

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        neft_step(), aihwkit_step()  # warm-up
        times = {"neft": [], "aihwkit": []}
        for r in range(args.steps):
            order = [("neft", neft_step), ("aihwkit", aihwkit_step)]
            for key, fn in (order if r % 2 == 0 else order[::-1]):
                times[key].append(timed(fn)[0])
        rate = {key: len(y) / statistics.median(times[key]) for key in times}
        rows.append({"model": f"{name} w{width:g}", "threads": threads, "neft": rate["neft"],
                     "aihwkit": rate["aihwkit"], "ratio": rate["neft"] / rate["aihwkit"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--models", default="lenet5:1,vgg8:0.25:10",
                        help="comma list of name:width[:chips] (chips overrides --chips; default: %(default)s)")
    parser.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist", "mnist-5k"])
    parser.add_argument("--data-dir", default=None, help="folder of the data set (default: neft's search order)")
    parser.add_argument("--images", type=int, default=500, help="test images per chip (default: %(default)s)")
    parser.add_argument("--chips", type=int, default=20, help="Monte Carlo chips per timed call (default: %(default)s)")
    parser.add_argument("--sigma", type=float, default=0.1, help="relative device variation (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=250, help="test images per forward (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per tool (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per tool (default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=300,
                        help="Adam steps before evaluating (default: %(default)s)")
    parser.add_argument("--threads", default="1", help="comma list of torch thread counts (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="LeNet-5 only, 1 thread, 10 chips, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.models, args.chips, args.rounds, args.steps = "lenet5:1", 10, 2, 3
    args.threads = [int(t) for t in args.threads.split(",")]
    import aihwkit

    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
          f"{torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}, aihwkit {aihwkit.__version__}; "
          f"{args.data}, {args.images} test images, sigma {args.sigma:g}, batch "
          f"{args.batch_size}, median of {args.rounds} rounds / {args.steps} steps", flush=True)
    train_x, train_y, images, labels = load_data(args.data, args.images, args.seed, args.data_dir)
    evaluation, training = [], []
    chips = args.chips
    for spec in args.models.split(","):
        name, width, *rest = spec.split(":") + ([] if ":" in spec else ["1"])
        width, args.chips = float(width), int(rest[0]) if rest else chips
        torch.manual_seed(args.seed)
        model = quick_train(models.create(name, 10, images.shape[1], width), train_x, train_y, args.train_steps,
                            args.seed)
        started = time.perf_counter()
        evaluation += bench_evaluation(name, width, model, images, labels, args)
        training += bench_training(name, width, model, train_x[:128], train_y[:128], args)
        print(f"  {name} width {width:g} done in {time.perf_counter() - started:.0f} s", flush=True)
    print("\nMonte Carlo evaluation (chip-images/s; accuracy over chips: mean +- std, %)")
    print("| model | chips | threads | neft | aihwkit | neft / aihwkit | neft acc | aihwkit acc "
          "| Welch / Levene / KS p | agree | same draws: max chip diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for r in evaluation:
        print(f"| {r['model']} | {r['chips']} | {r['threads']} | {r['neft']:.0f} | {r['aihwkit']:.0f} "
              f"| **{r['ratio']:.2f}** "
              f"| {r['neft_mean']:.2f} +- {r['neft_std']:.2f} | {r['aihwkit_mean']:.2f} +- {r['aihwkit_std']:.2f} "
              f"| {r['welch']:.2f} / {r['levene']:.2f} / {r['ks']:.2f} | {'yes' if r['agree'] else 'NO'} "
              f"| {r['same_draw_max_diff']:.2f} points |")
    print("\nOne noise-injection training step (images/s, batch 128)")
    print("| model | threads | neft | aihwkit | neft / aihwkit |")
    print("|---|---:|---:|---:|---:|")
    for r in training:
        print(f"| {r['model']} | {r['threads']} | {r['neft']:.0f} | {r['aihwkit']:.0f} | **{r['ratio']:.2f}** |")


if __name__ == "__main__":
    main()
