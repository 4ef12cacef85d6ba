"""Training-step throughput of the four neft objectives.

What is compared: one full training step -- ``objective.loss(model, x, y)`` + ``loss.backward()`` + an Adam step
over the backbone and (IRS) snapshot-head parameters -- for each method ``vanilla``, ``noise-injection``, ``ovf``
and ``irs``, on VGG8 (1x32x32 inputs, 10 classes) and ResNet18 (3x32x32 inputs, 10 classes) at width 1 and 0.25,
batch 128, random inputs, training sigma 0.1 (RRAM1), the paper's betas (MNIST row for VGG8, CIFAR-10 for ResNet18).

All methods of one (model, width) live in the same process and are timed alternately: every round times one step
of each method, in a rotated order, after one FLOP-counting step (and ``--warmup`` extra untimed steps) each; the
table reports medians over ``--steps`` rounds. This matters on shared VMs, where identical runs differ by 10-15 %.

Reported per row: images/s, ms/step, the overhead of the method over noise-injection as the ratio
``noise-injection img/s / method img/s`` (OVF does four forwards, so ~4x is expected; IRS adds small heads;
``ovf beta=0`` and ``irs beta=0`` skip their feedback forwards, so ~1x: before that change they cost what ``ovf``
and ``irs`` cost, the same forwards with the feedback weighted by 0), the
FLOPs of one step (counted once with ``torch.utils.flop_counter.FlopCounterMode`` over loss + backward; the Adam
update is not counted) and the achieved GFLOP/s.

Examples::

    python benchmarks/train_step.py                      # everything (~17 min on a busy 2-core AVX2 VM: use --quick)
    python benchmarks/train_step.py --quick              # VGG8 width 0.25 + ResNet18 width 0.25, 2 rounds
    python benchmarks/train_step.py --models vgg8 --widths 1 --methods noise-injection,ovf --steps 5
    python benchmarks/train_step.py --models vgg8 --widths 0.25 \\
        --methods "noise-injection,ovf,ovf beta=0,irs,irs beta=0"
    python benchmarks/train_step.py --device cuda --widths 1 --warmup 2 --steps 8    # the table of gpu.sh
    python benchmarks/train_step.py --models vgg8 --widths 0.25 --methods "noise-injection,noise-injection irdrop"

On CUDA every timed step ends with ``torch.cuda.synchronize``, so a step's time includes its kernels.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from neft import models
from neft.chip.circuit import Circuit
from neft.chip.circuit_settings import CircuitSettings
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.device_model import DeviceModel
from neft.training import objectives

METHODS = ("vanilla", "noise-injection", "ovf", "irs")
VARIANTS = METHODS + ("ovf beta=0", "irs beta=0",  # beta 0: the feedback forwards are skipped
                      "noise-injection irdrop")  # through IR drop on 128-row tiles (wire_resistance 1e-4)
IR_DROP = {"tile_rows": 128, "wire_resistance": 1e-4}
IN_CHANNELS = {"vgg8": 1, "resnet18": 3, "lenet5": 1}
DATASET_FAMILY = {"vgg8": "mnist", "resnet18": "cifar10", "lenet5": "mnist"}


def build(method: str, model_name: str, width: float, x: torch.Tensor, sigma: float, seed: int):
    """Model, objective and Adam optimiser for one method (same initial weights for every method), on the device
    of ``x``, with the training noise drawn there."""
    torch.manual_seed(seed)
    model = models.create(model_name, 10, x.shape[1], width).to(x.device).train()
    method, irdrop = method.removesuffix(" irdrop"), method.endswith(" irdrop")
    method, _, beta = method.partition(" beta=")
    beta = float(beta) if beta else objectives.default_beta(method, model_name, DATASET_FAMILY[model_name])
    objective = objectives.create(method, model, x, 10, sigma=sigma if method != "vanilla" else 0.0, beta=beta,
                                  generator=make_generator(seed, x.device))
    params = list(model.parameters()) + list(objective.modules().parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    if irdrop:  # every forward of the objective runs the mapped layers through the circuit, as the trainer does
        objective = ThroughCircuit(objective, Circuit(Crossbar(model, DeviceModel()), CircuitSettings(**IR_DROP)))
    return model, objective, optimizer


class ThroughCircuit:
    """An objective whose ``loss`` runs inside ``circuit.applied()`` (the trainer's training step)."""

    def __init__(self, objective, circuit) -> None:
        self.objective, self.circuit = objective, circuit

    def loss(self, model, x, y):
        with self.circuit.applied():
            return self.objective.loss(model, x, y)

    def modules(self):
        return self.objective.modules()


def step(model, objective, optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss, _ = objective.loss(model, x, y)
    loss.backward()
    optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def count_flops(model, objective, x, y) -> int:
    """FLOPs of loss + backward of one step (gradients are discarded afterwards)."""
    with FlopCounterMode(display=False) as counter:
        loss, _ = objective.loss(model, x, y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    objective.modules().zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_config(model_name: str, width: float, methods: list[str], args) -> list[dict]:
    channels = IN_CHANNELS[model_name]
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, channels, 32, 32, generator=gen).to(args.device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(args.device)
    setups = {m: build(m, model_name, width, x, args.sigma, args.seed) for m in methods}
    flops = {m: count_flops(*setups[m][:2], x, y) for m in methods}
    for _ in range(args.warmup):
        for m in methods:
            step(*setups[m], x, y)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(args.steps):
        order = methods[r % len(methods):] + methods[: r % len(methods)]
        for m in order:
            started = time.perf_counter()
            step(*setups[m], x, y)
            times[m].append(time.perf_counter() - started)
    rows = []
    for m in methods:
        seconds = statistics.median(times[m])
        rows.append({"model": model_name, "width": width, "method": m, "seconds": seconds,
                     "img_s": args.batch / seconds, "gflop_step": flops[m] / 1e9,
                     "gflop_s": flops[m] / seconds / 1e9, "spread": (max(times[m]) - min(times[m])) / seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--models", default="vgg8,resnet18", help="comma list of vgg8, resnet18 (default both)")
    parser.add_argument("--widths", default="1,0.25", help="comma list of widths (default 1,0.25)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma list of {', '.join(VARIANTS)} (default the first four)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="extra untimed steps per method (default 0: the FLOP-counting step warms up)")
    parser.add_argument("--steps", type=int, default=2, help="timed rounds; one step per method each (default 2)")
    parser.add_argument("--sigma", type=float, default=0.1, help="training sigma (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="torch device of model, batch and noise (default cpu)")
    parser.add_argument("--quick", action="store_true", help="width 0.25 only, 2 timed rounds")
    args = parser.parse_args()
    if args.quick:
        args.widths, args.steps = "0.25", 2
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in VARIANTS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(VARIANTS)}")
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch}, "
          f"{args.warmup} warm-up + {args.steps} timed steps per method (median)", flush=True)
    rows = []
    for model_name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for width in [float(w) for w in args.widths.split(",")]:
            started = time.perf_counter()
            rows += bench_config(model_name, width, methods, args)
            print(f"  {model_name} width {width:g} done in {time.perf_counter() - started:.0f} s", flush=True)
    print()
    header = (f"{'model':9} {'width':>5} {'method':22} {'img/s':>8} {'ms/step':>8} {'x vs NI':>8} "
              f"{'GFLOP/step':>10} {'GFLOP/s':>8} {'spread':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        ni = next((r for r in rows if r["model"] == row["model"] and r["width"] == row["width"]
                   and r["method"] == "noise-injection"), None)
        ratio = f"{ni['img_s'] / row['img_s']:.2f}" if ni else "-"
        print(f"{row['model']:9} {row['width']:>5g} {row['method']:22} {row['img_s']:8.1f} "
              f"{1000 * row['seconds']:8.0f} {ratio:>8} {row['gflop_step']:10.1f} {row['gflop_s']:8.1f} "
              f"{100 * row['spread']:6.0f}%")
    print("\nx vs NI = noise-injection img/s / method img/s (the method's cost relative to noise-injection); "
          "spread = (max - min) / median of the timed steps.")


if __name__ == "__main__":
    main()
