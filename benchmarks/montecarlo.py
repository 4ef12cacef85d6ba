"""Monte Carlo evaluation throughput: the authors' per-run loop versus ``neft.evaluation.montecarlo.evaluate``.

The same trained model, the same programmed chips (seeds ``run_seed(seed, sigma, r)``) and the same test images are
evaluated in several ways, in one process: one untimed warm-up call of every variant, then ``--rounds`` rounds that
run each variant once, in a rotated order; the table reports the median over the rounds:

``naive``
    What the authors' release does: for every run rebuild the model (``neft.models.create``), reload the
    checkpoint from disk (``torch.load`` of a file written once by ``neft.store.checkpoint.save`` in a temporary
    directory, then ``load_state_dict``), perturb the weights in place with the noise of
    ``Crossbar(model).sample_chip(sigma, make_generator(run_seed(seed, sigma, r)))`` (the engine's draws), and
    evaluate the test set one batch at a time in eval mode under ``torch.no_grad()``.
``engine`` (``--variants auto``)
    ``neft.evaluation.montecarlo.evaluate(model, images, labels, [sigma], runs=R, seed=seed, compile=False,
    precision="fp32", progress=False)``: no rebuild, no reload, ``functional_call`` with ``w + dW``, ``chips_per_pass``
    and ``memory_format`` "auto" (on CPU one chip per pass in channels_last layout, what ``compile="auto"`` runs at
    these small sizes; on CUDA the faster of one chip and a memory-sized vmap group, timed on the first batch).
``engine compiled`` (``compiled``)
    The same with ``compile=True`` (what ``compile="auto"`` picks on CPU above 5 TFLOP of forwards). The one-off
    compile happens in the warm-up and is reported separately, with the number of chips after which it pays off.
``engine 1 chip`` (``1chip``), ``engine vmap4`` (``vmap4``)
    The same with ``chips_per_pass=1`` or ``4`` (``torch.func.vmap`` over four stacked chips).
``engine batch N`` (``batch``), ``engine channels_last`` (``channels_last``)
    The same with ``--large-batch`` images per forward, or ``memory_format="channels_last"`` (the default
    layout on CUDA is NCHW).
``engine bf16`` (``bf16``)
    The engine with ``precision="bf16"`` (autocast) on the same chips; by default (``--bf16 auto``) only on CUDA,
    on CPUs with avx512_bf16/AMX and for LeNet-5, because emulated bf16 convolutions are ~30x slower than fp32.
    Printed with it: whether its mean accuracy lies inside the 95 % CI of the fp32 ``engine`` row's mean (same
    chips).

``engine read noise`` (``read``), ``engine ADC`` (``adc``), ``engine ADC sliced`` (``sliced``)
    The crossbar circuit (docs/method.md, 'The crossbar circuit'): read noise per read (``read_sigma`` 0.05), or
    ``--tile-rows`` (128) row tiles with ``--adc-bits`` (6) ADCs on every tile's partial sums (an analog sum per
    column, or one ADC per bit slice of the 8/2-bit mapping), ranges calibrated on 256 training images. Their
    GFLOP/s count their own FLOPs (``FlopCounterMode`` over the circuit's forward: tiles, slices and the read
    noise's variance pass, for every chip, plus the range calibration's tiled forward of the 256 images, once per
    ``evaluate`` call); ``vs plain`` is their chip-images/s over the ``engine`` row's, same process. Their
    accuracies differ from naive by design (no agreement check).

``engine chip options off`` (``off``), ``engine realistic chip`` (``chip``)
    The engine with every realistic-chip option given and off (must match ``engine`` in speed and, per run,
    exactly in accuracy), and on the realistic chip of ``configs/chips/realistic-chip.toml`` (8/2-bit quantized
    differential mapping, 1 % + 1 % stuck devices, drift read at one year, global drift compensation;
    docs/method.md, 'The realistic chip'); each is printed as a ratio of the plain engine's chip-images/s.

``engine conductance laws`` (``laws``), ``engine 1/f frozen`` (``f1``), ``engine laws + read noise`` (``lawsread``),
``engine 1/f per read`` (``f1read``)
    The realistic chip above with aihwkit 1.2's conductance-dependent laws (programming std and drift exponent of
    the conductance; docs/method.md, 'Conductance-dependent device laws'), then with its 1/f read noise frozen per
    chip, and with read noise per read: ``read_sigma`` 0.05 (``lawsread``: one std for every weight, the variance a
    box sum of the squared inputs; ``lawsread2``: state factor 2, stds that differ between weights, the variance a
    pass of the squared inputs over the squared stds), or the 1/f read noise drawn per read (``f1read``: stds that
    differ between weights); printed as ratios of the plain engine, of ``engine realistic chip`` and of the two read
    noise rows.

Default rows: ``auto,compiled,vmap4,bf16,off,chip`` on CPU, ``auto,1chip,bf16,batch,channels_last,off,chip`` on CUDA
(``--device``).

Reported: chip-images/s (runs x test images / seconds), the speed-up over naive, the achieved GFLOP/s (FLOPs of one
clean forward of the test set counted by ``torch.utils.flop_counter.FlopCounterMode``, times the runs, over the
time) and that as a percentage of the best of 2 x 10 measured 4096x4096 matmuls (``--matmul-size``), at the start
and at the end (fp32; the bf16 row is also compared with a bf16 matmul, measured at 512^3 where the CPU has no
native bf16). On CPU the
script asserts that the per-run accuracies of every fp32 variant agree with naive within one test image for every
seed (on CUDA, where batched and vmapped convolutions may pick other cuDNN algorithms, it prints the largest
difference instead), and reports the mean accuracy difference bf16 - fp32.

Models (``--models``): ``lenet5:1``, ``vgg8:0.25``, ``vgg8:1``, ``resnet18:1`` (name:width, 1x32x32 inputs, 10
classes). Each is first trained for a few Adam steps (``--train-steps``) so that the accuracies mean something;
test images are the mnist-5k test split, the first ``--images`` Fashion-MNIST test images (``--data
fashion-mnist``, IDX files in ``--data-dir`` or $NEFT_DATA), or random (``--data random``, no training).

Examples::

    python benchmarks/montecarlo.py                       # all three models (~11 min on a busy 2-core AVX2 VM)
    python benchmarks/montecarlo.py --quick               # LeNet-5 and VGG8 width 0.25 only, 1 round
    python benchmarks/montecarlo.py --models vgg8:1 --runs 8 --images 500 --batch-size 500
    python benchmarks/montecarlo.py --device cuda --data fashion-mnist --models vgg8:1 --images 10000 --runs 16 \
        --naive-batch-size 128 --batch-size 1000                # the GPU table of benchmarks/gpu.sh
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import neft.chip.circuit
import neft.chip.circuit_settings
import neft.models
import neft.store.checkpoint
from neft import data, run_seed
from neft.chip.crossbar import Crossbar, make_generator
from neft.chip.device_laws import AIHWKIT_NU_MEAN_LAW, AIHWKIT_NU_STD_LAW, AIHWKIT_PROG_COEFFS, AIHWKIT_READ_1F
from neft.chip.device_model import DeviceModel
from neft.common.compute import keep_freed_memory
from neft.evaluation import montecarlo
from neft.evaluation.metrics import ci_half_width
from neft.evaluation.precision import native_bf16

# Per-model defaults, sized so that the default run stays short on a 2-core CPU: (runs, test images, train steps).
DEFAULTS = {("lenet5", 1.0): (8, 1000, 150), ("vgg8", 0.25): (4, 500, 25), ("vgg8", 1.0): (2, 500, 5)}
FALLBACK = (4, 400, 20)
VARIANTS = ("auto", "1chip", "vmap4", "compiled", "bf16", "batch", "channels_last", "off", "chip", "read", "adc",
            "sliced", "laws", "f1", "lawsread", "lawsread2", "f1read")
CIRCUIT_ROWS = ("engine read noise", "engine ADC", "engine ADC sliced")
DEFAULT_VARIANTS = {"cpu": "auto,compiled,vmap4,bf16,off,chip", "cuda": "auto,1chip,bf16,batch,channels_last,off,chip"}
CHIP_FILE = Path(__file__).resolve().parent.parent / "configs" / "chips" / "realistic-chip.toml"
# the realistic chip of CHIP_FILE with aihwkit's conductance-dependent laws (docs/method.md, 'Conductance-dependent
# device laws'): programming std and drift exponent of the conductance; then with 1/f read noise, frozen or per read
LAWS = DeviceModel("laws-chip", quantize=True, stuck_off=0.01, stuck_on=0.01, prog_noise_coeffs=AIHWKIT_PROG_COEFFS,
                   drift_nu_mean_law=AIHWKIT_NU_MEAN_LAW, drift_nu_std_law=AIHWKIT_NU_STD_LAW, drift_nu_abs=True,
                   drift_time=3.15e7, drift_compensation=True)
FROZEN_1F = dataclasses.replace(LAWS, name="laws-chip-1f", read_noise_1f=AIHWKIT_READ_1F)
PER_READ_1F = dataclasses.replace(FROZEN_1F, name="laws-chip-1f-per-read", read_noise_1f_per_read=True)
STATE_READ = dataclasses.replace(LAWS, name="laws-chip-s2", state_factor=2.0)  # read stds differ between weights
CHIP_ROWS = ("engine realistic chip", "engine conductance laws", "engine 1/f frozen", "engine laws + read noise",
             "engine laws s2 + read noise", "engine 1/f per read")  # other chips than naive's: no agreement check
OFF = {"quantize": False, "stuck_off": 0.0, "stuck_on": 0.0, "drift_nu_mean": 0.0, "drift_nu_std": 0.0,
       "drift_compensation": False}  # every realistic-chip option given explicitly, off


def variant(key: str, args) -> tuple[str, dict]:
    """Row label and ``montecarlo.evaluate`` settings of the engine variant ``key`` (one of ``VARIANTS``)."""
    return {
        "auto": ("engine", {}),
        "1chip": ("engine 1 chip", {"chips_per_pass": 1}),
        "vmap4": ("engine vmap4", {"chips_per_pass": 4}),
        "compiled": ("engine compiled", {"compile": True}),
        "bf16": ("engine bf16", {"precision": "bf16"}),
        "batch": (f"engine batch {args.large_batch}", {"batch_size": args.large_batch}),
        "channels_last": ("engine channels_last", {"memory_format": "channels_last"}),
        "off": ("engine chip options off", OFF),
        "chip": ("engine realistic chip", {"device_model": str(CHIP_FILE)}),
        "laws": ("engine conductance laws", {"device_model": LAWS}),
        "f1": ("engine 1/f frozen", {"device_model": FROZEN_1F}),
        "lawsread": ("engine laws + read noise", {"device_model": LAWS, "read_sigma": 0.05}),
        "lawsread2": ("engine laws s2 + read noise", {"device_model": STATE_READ, "read_sigma": 0.05}),
        "f1read": ("engine 1/f per read", {"device_model": PER_READ_1F}),
        "read": ("engine read noise", {"read_sigma": 0.05}),
        "adc": ("engine ADC", {"tile_rows": args.tile_rows, "adc_bits": args.adc_bits, "dac_bits": 8}),
        "sliced": ("engine ADC sliced", {"tile_rows": args.tile_rows, "adc_bits": args.adc_bits, "dac_bits": 8,
                                         "adc_mode": "sliced"}),
    }[key]


def circuit_flops(model, images, batch_size: int, settings: dict, calibration) -> tuple[int, int]:
    """FLOPs of one clean forward of ``images`` through the crossbar circuit of ``settings`` (its tiles, slices
    and read-noise variance pass), and of the one-off range calibration on ``calibration`` (a tiled forward that
    every ``evaluate`` call runs when a converter is on; 0 otherwise), counted by ``FlopCounterMode``."""
    fields = {k: v for k, v in settings.items() if k in neft.chip.circuit_settings.FIELDS or k == "read_sigma"}
    executor = neft.chip.circuit.Circuit(Crossbar(model), neft.chip.circuit_settings.CircuitSettings(**fields))
    with FlopCounterMode(display=False) as counter:
        executor.calibrate(calibration)
    with executor.applied(), executor.reading([0] if fields.get("read_sigma") else None):
        return forward_flops(model, images, batch_size), counter.get_total_flops()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int = 4096, repeats: int = 10) -> float:
    """Best GFLOP/s of an n x n x n matmul in ``dtype`` on ``device`` over ``repeats`` (the machine's ceiling:
    single measurements on these VMs vary from 72 to 108 GFLOP/s, and a low one would flatter the % of matmul)."""
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - started)
    return 2 * n**3 / min(times) / 1e9


def load_data(kind: str, count: int, seed: int, data_dir: str | None = None):
    """(train images, train labels, test images, test labels), preprocessed float [N, 1, 32, 32] on the CPU; the
    first ``count`` test images. Fashion-MNIST keeps 20,000 training images (enough for a few hundred steps)."""
    if kind in ("mnist-5k", "fashion-mnist"):
        dataset = data.load(kind, data_dir, seed=seed, train_subset=20_000 if kind == "fashion-mnist" else None)
        train_x, train_y = dataset.splits["train"]
        test_x, test_y = dataset.splits["test"]
        return (dataset.preprocess(train_x), train_y, dataset.preprocess(test_x[:count]), test_y[:count])
    gen = torch.Generator().manual_seed(seed)
    return (None, None, torch.randn(count, 1, 32, 32, generator=gen), torch.randint(0, 10, (count,), generator=gen))


def quick_train(model, x, y, steps: int, seed: int, batch: int = 64):
    """A few Adam steps of plain cross-entropy, then a BatchNorm re-estimate over 1,024 training images."""
    if steps <= 0 or x is None:
        return model
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(y), (batch,), generator=gen)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:  # after so few steps the running statistics lag the weights; re-estimate them (cumulative average)
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        with torch.no_grad():
            for start in range(0, min(1024, len(y)), 256):
                model(x[start:start + 256])
        for bn in bns:
            bn.momentum = 0.1
    return model.eval()


def naive(file: Path, name: str, width: float, images, labels, sigma: float, runs: int, seed: int,
          batch_size: int) -> list[float]:
    """The authors' loop: rebuild, reload, perturb in place, evaluate batch by batch (one host sync per batch, as
    ``.item()`` in their test loop), on the device of ``images``. Per-run accuracies (%)."""
    device = images.device
    accuracies = []
    for r in range(runs):
        model = neft.models.create(name, 10, images.shape[1], width).to(device)
        state = torch.load(file, map_location=device, weights_only=True)
        model.load_state_dict(state["state_dict"])
        model.eval()
        chip = Crossbar(model).sample_chip(sigma, make_generator(run_seed(seed, sigma, r), device))
        with torch.no_grad():
            for param_name, param in model.named_parameters():
                if param_name in chip:
                    param.add_(chip[param_name])
            correct = 0
            for start in range(0, len(labels), batch_size):
                logits = model(images[start:start + batch_size])
                correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
        accuracies.append(100.0 * correct / len(labels))
    return accuracies


def engine(model, images, labels, runs: int, args, **settings) -> list[float]:
    """Per-run accuracies (%) of ``montecarlo.evaluate`` at ``args.sigma`` with ``settings`` over the defaults
    (``args.batch_size`` images per forward, no compile, fp32 unless ``settings`` say otherwise)."""
    settings = {"batch_size": args.batch_size, "compile": False, "precision": "fp32", **settings}
    result = montecarlo.evaluate(model, images, labels, [args.sigma], runs=runs, seed=args.seed, progress=False,
                                 **settings)
    return result["per_sigma"][0]["accuracy"]["per_run"]


def forward_flops(model, images, batch_size: int) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    return counter.get_total_flops()


def bench_model(name: str, width: float, args, ceilings: dict, tmp: Path) -> list[dict]:
    runs_default, images_default, steps_default = DEFAULTS.get((name, width), FALLBACK)
    runs = args.runs or runs_default
    count = args.images or images_default
    steps = args.train_steps if args.train_steps is not None else steps_default
    device = torch.device(args.device)
    train_x, train_y, images, labels = (t if t is None else t.to(device)
                                        for t in load_data(args.data, count, args.seed, args.data_dir))
    torch.manual_seed(args.seed)
    model = neft.models.create(name, 10, images.shape[1], width).to(device)
    started = time.perf_counter()
    quick_train(model, train_x, train_y, steps, args.seed)
    trained_in = time.perf_counter() - started
    file = tmp / f"{name}_{width:g}.pt"
    neft.store.checkpoint.save(file, model, {"model": {"name": name, "num_classes": 10, "in_channels": images.shape[1],
                                                 "width": width}})
    flops = forward_flops(model, images, args.batch_size) * runs
    with torch.no_grad():
        clean = 100.0 * sum(int((model(images[i:i + args.batch_size]).argmax(1) == labels[i:i + args.batch_size])
                                .sum()) for i in range(0, len(labels), args.batch_size)) / len(labels)
    print(f"{name} width {width:g}: {runs} chips x {len(labels)} images, batch {args.batch_size}, sigma {args.sigma}, "
          f"{steps} training steps ({trained_in:.0f} s), clean accuracy {clean:.1f} %, "
          f"{flops / runs / len(labels) / 1e9:.3f} GFLOP per image-forward", flush=True)

    own_flops = {}  # the circuit rows' own FLOPs
    variants = {"naive": lambda: naive(file, name, width, images, labels, args.sigma, runs, args.seed,
                                       args.naive_batch_size or args.batch_size)}
    for key in args.variants:
        if key == "bf16" and not (args.bf16 == "all" or (args.bf16 == "auto" and (ceilings["native_bf16"]
                                                                                    or name == "lenet5"))):
            continue
        label, settings = variant(key, args)
        if label in CIRCUIT_ROWS:
            calibration = (train_x if train_x is not None else images)[:256]
            per_chip, calibrating = circuit_flops(model, images, args.batch_size, settings, calibration)
            own_flops[label] = per_chip * runs + calibrating
            settings = {**settings, "calibration_images": calibration} if key != "read" else settings
        variants[label] = lambda settings=settings: engine(model, images, labels, runs, args, **settings)
    keys = list(variants)
    times = {k: [] for k in keys}
    accuracies = {}
    warmup = {}
    for k in keys:  # untimed warm-up of every variant (oneDNN kernel caches; torch.compile's one-off compile)
        started = time.perf_counter()
        variants[k]()
        warmup[k] = time.perf_counter() - started
    for r in range(args.rounds):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            started = time.perf_counter()
            accuracies[k] = variants[k]()
            times[k].append(time.perf_counter() - started)

    tolerance = 100.0 / len(labels) + 1e-9
    for k in keys[1:] if device.type == "cpu" else []:  # CUDA: other cuDNN algorithms per batch shape
        worst = max(abs(a - b) for a, b in zip(accuracies["naive"], accuracies[k]))
        if k not in ("engine bf16", *CHIP_ROWS, *CIRCUIT_ROWS):  # other numerics / other chips
            assert worst <= tolerance, (f"{name} width {width:g}: {k} per-run accuracies differ from naive by "
                                        f"{worst:.3f} points (> one image): {accuracies['naive']} vs {accuracies[k]}")
    fp32_mean = statistics.fmean(accuracies["engine" if "engine" in accuracies else "naive"])
    rows = []
    for k in keys:
        seconds = statistics.median(times[k])
        gflop_s = own_flops.get(k, flops) / seconds / 1e9
        ceiling = ceilings["bf16" if k == "engine bf16" else "fp32"]
        rows.append({
            "model": f"{name} w{width:g}", "variant": k, "seconds": seconds,
            "chip_img_s": runs * len(labels) / seconds, "speedup": statistics.median(times["naive"]) / seconds,
            "gflop_s": gflop_s, "pct_fp32": 100 * gflop_s / ceilings["fp32"], "pct_own": 100 * gflop_s / ceiling,
            "mean_acc": statistics.fmean(accuracies[k]), "d_acc": statistics.fmean(accuracies[k]) - fp32_mean,
            "max_diff": max(abs(a - b) for a, b in zip(accuracies["naive"], accuracies[k])),
        })
    if "engine" in times:
        plain = statistics.median(times["engine"])
        for row in rows:
            if row["variant"] in CIRCUIT_ROWS:
                print(f"  {row['variant']}: {plain / row['seconds']:.2f}x the plain engine's chip-images/s, "
                      f"{row['gflop_s'] / (flops / plain / 1e9):.0%} of its GFLOP/s (own FLOPs "
                      f"{own_flops[row['variant']] / flops:.2f}x the plain forward's)", flush=True)
    if "engine compiled" in times:
        once = warmup["engine compiled"] - statistics.median(times["engine compiled"])
        gain = statistics.median(times["engine"]) - statistics.median(times["engine compiled"])
        print(f"  torch.compile: one-off {once:.1f} s; saves {gain / runs:.3f} s per chip over the eager engine"
              f"{f', pays off after {once / gain * runs:.0f} chips' if gain > 0 else ''}", flush=True)
    same_chips = [r["max_diff"] for r in rows if r["variant"] not in ("engine bf16", *CHIP_ROWS,
                                                                        *CIRCUIT_ROWS)]  # the naive loop's chips
    print(f"  per-run accuracies of the fp32 variants of the same chips vs naive: max |diff| {max(same_chips):.3f} "
          f"points (one image: {tolerance:.3f})", flush=True)
    for k in ("engine chip options off", *CHIP_ROWS):
        if k in times and "engine" in times:
            print(f"  {k} vs the plain engine: {statistics.median(times['engine']) / statistics.median(times[k]):.2f}x "
                  f"the chip-images/s", flush=True)
    chip, reads, varied = "engine realistic chip", "engine laws + read noise", "engine laws s2 + read noise"
    for k, base in (("engine conductance laws", chip), ("engine 1/f frozen", chip), ("engine 1/f per read", reads),
                    ("engine 1/f per read", varied)):
        if k in times and base in times:
            print(f"  {k} vs {base}: {statistics.median(times[base]) / statistics.median(times[k]):.2f}x the "
                  f"chip-images/s", flush=True)
    if "engine bf16" in times and "engine" in times:
        fp32, bf16 = accuracies["engine"], accuracies["engine bf16"]
        half = ci_half_width(statistics.stdev(fp32), len(fp32))
        inside = abs(statistics.fmean(bf16) - statistics.fmean(fp32)) <= half
        speedup = statistics.median(times["engine"]) / statistics.median(times["engine bf16"])
        print(f"  bf16 vs fp32 engine: speed-up {speedup:.2f}x, mean accuracy {statistics.fmean(bf16):.2f} vs "
              f"{statistics.fmean(fp32):.2f} +- {half:.2f} (fp32 95 % CI): {'inside' if inside else 'OUTSIDE'} the "
              f"fp32 CI; max per-run |diff| {max(abs(a - b) for a, b in zip(fp32, bf16)):.2f} points", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--models", default="lenet5:1,vgg8:0.25,vgg8:1",
                        help="comma list of name:width (default lenet5:1,vgg8:0.25,vgg8:1)")
    parser.add_argument("--runs", type=int, default=None,
                        help="chips R per model (default 8 lenet5, 4 vgg8:0.25, 2 vgg8:1)")
    parser.add_argument("--images", type=int, default=None,
                        help="test images per model (default 1000 lenet5, 500 vgg8:0.25, 500 vgg8:1)")
    parser.add_argument("--batch-size", type=int, default=250, help="test images per forward, both loops (250)")
    parser.add_argument("--naive-batch-size", type=int, default=None,
                        help="test images per forward of the naive loop (default: --batch-size; the authors: 128)")
    parser.add_argument("--large-batch", type=int, default=2500, help="images per forward of the 'batch' row (2500)")
    parser.add_argument("--variants", default=None,
                        help=f"comma list of engine rows from {','.join(VARIANTS)} (naive always runs; default "
                             f"{DEFAULT_VARIANTS['cpu']} on CPU, {DEFAULT_VARIANTS['cuda']} on CUDA)")
    parser.add_argument("--matmul-size", type=int, default=4096,
                        help="n of the n^3 matmuls that measure the ceiling (default 4096; smaller for smoke runs)")
    parser.add_argument("--device", default="cpu", help="torch device of model, images and chips (default cpu)")
    parser.add_argument("--sigma", type=float, default=0.1, help="device variation (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile-rows", type=int, default=128, help="rows per tile of the adc/sliced rows (128)")
    parser.add_argument("--adc-bits", type=int, default=6, help="ADC bits of the adc/sliced rows (6)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds, each runs every variant (default 2)")
    parser.add_argument("--data", choices=("mnist-5k", "fashion-mnist", "random"), default="mnist-5k",
                        help="test images: mnist-5k test split (default), Fashion-MNIST test split or random "
                             "(untrained models)")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding fashion-mnist (default: $NEFT_DATA, then /usr/share/datasets)")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="Adam steps (batch 64) on the training split before evaluating (default 150/25/5)")
    parser.add_argument("--bf16", choices=("auto", "all", "none"), default="auto",
                        help="bf16 row (when --variants has bf16) for: all models, none, or auto (all on CUDA or "
                             "with native bf16 instructions, else only lenet5: emulated bf16 is ~30x slower)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="call neft.common.compute.keep_freed_memory() first, as the neft command does "
                             "(process-wide: every variant runs without re-faulting its activations)")
    parser.add_argument("--quick", action="store_true", help="lenet5:1 and vgg8:0.25 only, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.models, args.rounds = "lenet5:1,vgg8:0.25", 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory and not keep_freed_memory():
        print("keep_freed_memory() does not apply here (not glibc); the allocator is unchanged")
    if args.data == "random":
        args.train_steps = 0
    device = torch.device(args.device)
    args.variants = [v.strip() for v in (args.variants or DEFAULT_VARIANTS[device.type]).split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")

    size = args.matmul_size
    ceilings = {"fp32": matmul_gflops(torch.float32, device, size),
                "native_bf16": native_bf16(device)}
    ceilings["bf16"] = matmul_gflops(torch.bfloat16, device, size if ceilings["native_bf16"] else min(size, 512), 3)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, "
          f"{'kept' if args.keep_freed_memory else 'glibc default'} freed memory; {size}^3 matmul: "
          f"fp32 {ceilings['fp32']:.0f} GFLOP/s, bf16 {ceilings['bf16']:.1f} GFLOP/s "
          f"({'native' if ceilings['native_bf16'] else 'no avx512_bf16/AMX: emulated, measured at 512^3'})", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in [s.strip() for s in args.models.split(",") if s.strip()]:
            name, _, width = spec.partition(":")
            rows += bench_model(name.lower(), float(width or 1), args, ceilings, Path(tmp))
    again = matmul_gflops(torch.float32, device, size)
    print(f"\n{size}^3 fp32 matmul measured again: {again:.0f} GFLOP/s; the ceiling is the best of both "
          f"({max(again, ceilings['fp32']):.0f} GFLOP/s)")
    for row in rows:
        row["pct_fp32"] *= ceilings["fp32"] / max(again, ceilings["fp32"])
        if row["variant"] != "engine bf16":
            row["pct_own"] = row["pct_fp32"]
    print()
    header = (f"{'model':15} {'variant':20} {'chip-img/s':>10} {'s':>7} {'vs naive':>8} {'GFLOP/s':>8} "
              f"{'% fp32 mm':>9} {'% own mm':>8} {'mean acc':>8} {'d acc':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['model']:15} {row['variant']:20} {row['chip_img_s']:10.1f} {row['seconds']:7.2f} "
              f"{row['speedup']:8.2f} {row['gflop_s']:8.1f} {row['pct_fp32']:8.0f}% {row['pct_own']:7.0f}% "
              f"{row['mean_acc']:8.2f} {row['d_acc']:+7.2f}")
    print("\nvs naive = naive seconds / variant seconds; % fp32 mm / % own mm = GFLOP/s as a share of the fp32 "
          "(own precision's) n^3 matmul; d acc = mean accuracy minus the fp32 engine's (percentage points).")


if __name__ == "__main__":
    main()
