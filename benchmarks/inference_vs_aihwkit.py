"""neft's chip preset ``aihwkit-inference`` against aihwkit 1.2's shipped ``InferenceRPUConfig()``, in one process.

Development machines only: aihwkit is never a dependency of neft and never runs in CI; without it this script says
why it is skipped and exits 0 (benchmarks/README.md, 'neft against aihwkit', says how to install the wheel).

The same briefly trained networks (LeNet-5 on mnist-5k, VGG8 width 0.25 on a Fashion-MNIST subset; a few hundred
Adam steps) are evaluated at sigma 0 by

* neft: ``montecarlo.evaluate(..., device_model="aihwkit-inference", drift_time=t + 20)`` (aihwkit counts its
  ``t_inference`` from t0 = 20 s; docs/method.md, 'The periphery' and 'Realistic presets'), chips from neft's seeds;
* aihwkit: ``convert_to_analog(model, InferenceRPUConfig())``, then per chip ``program_analog_weights()`` and
  ``drift_analog_weights(t)``, chips from torch's global generator (independent draws);

at ``t`` = 1 hour and 1 year. It reports each tool's mean, std and time per chip-image, the difference of the means
and the p-values of the two-sample Kolmogorov-Smirnov test (and Welch's t-test) between the accuracy samples.

Examples::

    python benchmarks/inference_vs_aihwkit.py                          # both networks, 20 chips each
    python benchmarks/inference_vs_aihwkit.py --models lenet5:1 --chips 10 --images 500
    python benchmarks/inference_vs_aihwkit.py --models vgg8:0.25 --times "1 year" --chips 30 --chip-seed 1000
    python benchmarks/inference_vs_aihwkit.py --speed-rounds 3 --chips 40     # speed only, alternating the tools
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

try:
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import InferenceRPUConfig
except ImportError as error:  # pragma: no cover - the usual case: aihwkit is not installed
    print(f"inference_vs_aihwkit.py: skipped: aihwkit is not installed ({error}); it is a development-only "
          "comparison (benchmarks/README.md, 'neft against aihwkit', says how to install it)")
    sys.exit(0)

from montecarlo import load_data, quick_train  # noqa: E402 - the sibling benchmark's data and training helpers

from neft import models  # noqa: E402
from neft.evaluation import montecarlo  # noqa: E402

TIMES = {"1 h": 3600.0, "1 year": 3.15e7}
DATA = {"lenet5": "mnist-5k", "vgg8": "fashion-mnist"}


def aihwkit_chips(model, images, labels, t_inference: float, chips: int, batch_size: int, seed: int) -> list[float]:
    """Accuracies (%) of ``chips`` chips of aihwkit's ``InferenceRPUConfig()`` read ``t_inference`` s after
    programming."""
    torch.manual_seed(seed)
    analog = convert_to_analog(model, InferenceRPUConfig()).eval()
    result = []
    with torch.no_grad():
        for _ in range(chips):
            analog.program_analog_weights()
            analog.drift_analog_weights(t_inference)
            correct = sum(int((analog(images[s:s + batch_size]).argmax(1) == labels[s:s + batch_size]).sum())
                          for s in range(0, len(labels), batch_size))
            result.append(100.0 * correct / len(labels))
    return result


def neft_chips(model, images, labels, calibration, t_inference: float, chips: int, batch_size: int,
               seed: int) -> list[float]:
    """Accuracies (%) of ``chips`` chips of neft's ``aihwkit-inference`` read at ``t_inference + 20`` s."""
    result = montecarlo.evaluate(model, images, labels, [0.0], runs=chips, seed=seed, batch_size=batch_size,
                                 device_model="aihwkit-inference", drift_time=t_inference + 20.0,
                                 calibration_images=calibration, precision="fp32", progress=False)
    return result["per_sigma"][0]["accuracy"]["per_run"]


def compare(name: str, model, data, args) -> list[dict]:
    from scipy import stats

    train_x, train_y, images, labels = data
    rows = []
    chip_seed = args.seed if args.chip_seed is None else args.chip_seed
    for label, t in TIMES.items():
        if label not in args.times.split(","):
            continue
        started = time.perf_counter()
        ours = neft_chips(model, images, labels, train_x[:256], t, args.chips, args.batch_size, chip_seed)
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        theirs = aihwkit_chips(model, images, labels, t, args.chips, args.batch_size, chip_seed + 1)
        theirs_s = time.perf_counter() - started
        rows.append({"model": name, "t": label, "neft": ours, "aihwkit": theirs,
                     "ks": stats.ks_2samp(ours, theirs).pvalue,
                     "welch": stats.ttest_ind(ours, theirs, equal_var=False).pvalue,
                     "speed": theirs_s / ours_s})
        row = rows[-1]
        print(f"{name:10s} {label:7s} neft {statistics.mean(ours):6.2f} +- {statistics.stdev(ours):5.2f}  aihwkit "
              f"{statistics.mean(theirs):6.2f} +- {statistics.stdev(theirs):5.2f}  diff "
              f"{statistics.mean(ours) - statistics.mean(theirs):+6.2f}  KS p {row['ks']:.3f}  Welch p "
              f"{row['welch']:.3f}  neft {row['speed']:.1f}x faster per chip-image (neft {ours_s:.1f} s, aihwkit "
              f"{theirs_s:.1f} s)", flush=True)
        print("  per-chip accuracies: neft", [round(a, 2) for a in ours], "aihwkit", [round(a, 2) for a in theirs],
              flush=True)
    return rows


def speed(name: str, model, data, args) -> None:
    """Time per chip-image of both tools at 1 h, alternating ``--speed-rounds`` times (neft, then aihwkit, on the same
    images and chip count), so that a change of the machine's load hits both; prints each round's ratio and the
    median, of the wall time and of the process's CPU time (on a shared machine the CPU time is the steadier: it
    does not count the time the process waits for a core)."""
    train_x, _, images, labels = data
    ratios, cpu_ratios = [], []
    for round_ in range(args.speed_rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        neft_chips(model, images, labels, train_x[:256], TIMES["1 h"], args.chips, args.batch_size, round_)
        ours = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        aihwkit_chips(model, images, labels, TIMES["1 h"], args.chips, args.batch_size, round_)
        theirs = time.perf_counter() - wall, time.process_time() - cpu
        ratios.append(theirs[0] / ours[0])
        cpu_ratios.append(theirs[1] / ours[1])
        print(f"{name:10s} speed round {round_ + 1}, {args.chips} chips x {len(labels)} images: wall neft "
              f"{ours[0]:.1f} s, aihwkit {theirs[0]:.1f} s ({ratios[-1]:.2f}x); CPU neft {ours[1]:.1f} s, aihwkit "
              f"{theirs[1]:.1f} s ({cpu_ratios[-1]:.2f}x)", flush=True)
    print(f"{name:10s} speed: neft faster per chip-image by a median {statistics.median(ratios):.2f}x (wall), "
          f"{statistics.median(cpu_ratios):.2f}x (process CPU time) over {len(ratios)} rounds", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet5:1,vgg8:0.25", help="name:width list (default: %(default)s)")
    parser.add_argument("--chips", type=int, default=20, help="chips per tool and read time (default: %(default)s)")
    parser.add_argument("--images", type=int, default=500, help="test images (default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=300, help="Adam steps of the quick training")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--times", default=",".join(TIMES), help="read times (default: %(default)s)")
    parser.add_argument("--speed-rounds", type=int, default=0,
                        help="only time the tools: R rounds, neft then aihwkit, --chips chips each at 1 h")
    parser.add_argument("--chip-seed", type=int, default=None,
                        help="seed of the chips (neft's first chip seed; aihwkit's generator gets it + 1); default: "
                             "--seed, which also seeds the data subset and the quick training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); {args.chips} chips per tool, {args.images} test "
          "images, sigma 0 (aihwkit's PCM noise only)")
    for spec in args.models.split(","):
        name, width = spec.split(":")
        data = load_data(DATA[name], args.images, args.seed)
        model = models.create(name, num_classes=10, in_channels=1, width=float(width), init="torch")
        model = quick_train(model, data[0], data[1], args.train_steps, args.seed)
        if args.speed_rounds:
            speed(f"{name} w{width}", model.eval(), data, args)
        else:
            compare(f"{name} w{width}", model.eval(), data, args)


if __name__ == "__main__":
    main()
