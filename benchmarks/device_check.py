"""Device-safety and chips-per-pass checks of issue 11, on one device (``--device cuda`` on a GPU).

Prints, in a few seconds:

1. a CPU generator (``neft.make_generator(7)``, as in the README quick start) with the model on ``--device``:
   whether ``Crossbar.sample_chip`` works there and gives the CPU model's chip bit for bit, and the
   noise-injection loss with that generator;
2. a model with test-time dropout in ``forward`` (vmap cannot run it) evaluated with ``chips_per_pass=2`` and
   ``"auto"``: the per-run accuracies and the warnings;
3. for VGG8 (width 1 on CUDA, ``--width`` otherwise) on ``--images`` random images: the measured time per chip of
   one chip per pass and of the memory-sized vmap group, and what ``chips_per_pass="auto"`` picks.

Example::

    PYTHONPATH=src python benchmarks/device_check.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from neft import Crossbar, make_generator, models
from neft.evaluation import montecarlo
from neft.evaluation.chip_forward import ChipForward, _chips_that_fit, choose_chips_per_pass
from neft.training import objectives


class DropoutAtTest(nn.Module):
    """Monte Carlo dropout in forward: a random operation vmap refuses."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(F.dropout(torch.relu(self.fc1(x)), 0.5, training=True))


def generator_check(device: torch.device) -> None:
    torch.manual_seed(0)
    cpu_model = models.create("lenet5", 10, 1).eval()
    model = copy.deepcopy(cpu_model).to(device)
    reference = Crossbar(cpu_model).sample_chip(0.1, make_generator(7))
    chip = Crossbar(model).sample_chip(0.1, make_generator(7))
    same = all(torch.equal(chip[name].cpu(), reference[name]) for name in reference)
    print(f"CPU generator, model on {device}: chip drawn, on {next(iter(chip.values())).device}, identical to the "
          f"CPU model's chip: {same}")
    x, y = torch.randn(8, 1, 32, 32, device=device), torch.randint(0, 10, (8,), device=device)
    objective = objectives.create("noise-injection", model.train(), x, 10, sigma=0.1, generator=make_generator(7))
    loss, _ = objective.loss(model, x, y)
    loss.backward()
    print(f"noise-injection loss with a CPU generator on {device}: {loss.item():.4f}, gradients reached the "
          f"weights: {all(p.grad is not None for p in model.parameters())}")


def fallback_check(device: torch.device) -> None:
    torch.manual_seed(0)
    model = DropoutAtTest().to(device)
    x, y = torch.randn(64, 16, device=device), torch.randint(0, 4, (64,), device=device)
    for chips in (2, "auto"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = montecarlo.evaluate(model, x, y, [0.1], runs=4, chips_per_pass=chips, progress=False)
        per_run = result["per_sigma"][0]["accuracy"]["per_run"]
        notes = [str(w.message) for w in caught if "vmap" in str(w.message)]
        print(f"dropout model, chips_per_pass={chips!r}: {len(per_run)} per-run accuracies "
              f"{[round(a, 2) for a in per_run]}; {len(notes)} vmap warning(s){': ' + notes[0] if notes else ''}")


def auto_check(device: torch.device, width: float, images: int) -> None:
    torch.manual_seed(0)
    model = models.create("vgg8", 10, 1, width).to(device).eval()
    x = torch.randn(images, 1, 32, 32, device=device)
    crossbar = Crossbar(model)
    with torch.no_grad():
        group = _chips_that_fit(model, x, 64) if device.type == "cuda" else 4
        forward = ChipForward(crossbar, x, chips_per_pass=group)
        one, many = forward.seconds_per_chip(x, 1), forward.seconds_per_chip(x, group)
        chosen = choose_chips_per_pass(crossbar, x, 64)
    print(f"VGG8 width {width:g}, batch {images}: one chip per pass {1e3 * one:.2f} ms/chip "
          f"({images / one:,.0f} chip-images/s), vmap over {group} chips {1e3 * many:.2f} ms/chip "
          f"({images / many:,.0f} chip-images/s); chips_per_pass='auto' picks {chosen}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--width", type=float, default=1.0, help="VGG8 width of check 3 (default 1)")
    parser.add_argument("--images", type=int, default=1000, help="batch of check 3 (default 1000)")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator_check(device)
    fallback_check(device)
    auto_check(device, args.width, args.images)


if __name__ == "__main__":
    main()
