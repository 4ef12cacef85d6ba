"""neft's ``PCM-aihwkit`` chip against aihwkit 1.2's ``PCMLikeNoiseModel``: chip for chip with the same draws, and
in distribution with independent draws.

aihwkit (https://github.com/IBM/aihwkit) is a development-only comparison: never a dependency of neft and never run
in CI; without it this script prints why it is skipped and exits 0 (benchmarks/README.md says how to install it).

aihwkit side: ``TorchInferenceRPUConfig`` with ``MappingParameter(digital_bias=True, weight_scaling_omega=0,
max_input_size=0, max_output_size=0)`` (one tile per layer, no rescaling, biases digital, as neft maps weights only),
``IOParameters(is_perfect=True)`` (no DAC/ADC, no output noise), ``PCMLikeNoiseModel()`` with its defaults (g_max
25 uS, programming polynomial, drift exponent law, 1/f read noise, t_0 20 s, t_read 250 ns) and
``GlobalDriftCompensation()``. A chip is ``program_analog_weights()`` then ``drift_analog_weights(t)`` for each read
time ``t`` (1 h, 1 day, 1 year after programming); neft side: ``Crossbar(model, PCM-aihwkit at that read
time).sample_chip`` with the chip seed ``run_seed(seed, sigma, r)``, as ``montecarlo.evaluate`` draws it.

* ``same draws``: aihwkit runs its own code, but every standard normal it draws (``randn_like`` in
  ``aihwkit/inference/noise/pcm.py``) is replaced by the one neft drew for the same device (:class:`Feed`). Per tile
  aihwkit draws, in this order: when programming, the programming error and the drift exponent of the ``G+`` device
  row, then of the ``G-`` row; at each ``drift_weights(t)``, the 1/f read noise of ``G+`` then ``G-``; every draw
  shaped like the tile's matrix ``weight.reshape(out, -1)``. neft's draws are re-drawn from the chip seed in the
  order :mod:`neft.chip.effects` documents (per layer ``[2, n, *shape]`` each: programming, drift exponent, frozen
  1/f); the programmed state is the chip of ``read_noise_1f_per_read`` at t0 (no frozen 1/f draw). The script
  reports, over chips, layers and states (programmed, 1 h, 1 day, 1 year), the largest difference of the chip's
  weights (in units of the layer's max|W|; aihwkit's matrix times its alpha), of the compensation factor (relative)
  and of the accuracy (points), and how many chips have equal accuracies, for two pairs (:func:`variants`):
  ``PCMLikeNoiseModel`` as shipped against neft's ``PCM-aihwkit`` (which sets aihwkit 1.2's two conventions,
  ``clip_g_max = false`` and ``drift_of = "resplit"``), and :class:`NeftConventions`, aihwkit's own law methods
  with neft's default conventions (clipping at g_max, drift and 1/f noise on the programmed devices rather than on
  the programmed weight split again), against ``PCM-aihwkit`` with those defaults, the path of every other preset.
* ``own draws``: each tool draws its own chips (aihwkit from torch's global generator); the accuracy samples at each
  read time are compared with Welch's t-test (means), Levene's test (spreads) and the two-sample Kolmogorov-Smirnov
  test, and called in agreement when all three p-values exceed 0.05.

An aihwkit detail the script works around: ``program_analog_weights`` leaves each tile's compensation factor of
the previous ``drift_analog_weights`` in place, so a freshly programmed chip read before any drift call is scaled by
the last chip's alpha; the script resets it to 1 after programming.

Examples::

    python benchmarks/pcm_vs_aihwkit.py                  # LeNet-5 (mnist-5k) and VGG8 width 0.25 (fashion-mnist)
    python benchmarks/pcm_vs_aihwkit.py --quick          # LeNet-5 only, fewer chips and images
    python benchmarks/pcm_vs_aihwkit.py --models lenet5:1:mnist-5k --chips 50 --images 1000
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

try:
    import aihwkit.inference.noise.pcm as aihwkit_pcm
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation
    from aihwkit.nn.conversion import convert_to_analog
except ImportError as error:  # pragma: no cover - the usual case: aihwkit is not installed
    print(f"pcm_vs_aihwkit.py: skipped: aihwkit is not installed ({error}); it is a development-only comparison, "
          "install it as benchmarks/README.md describes ('neft against aihwkit')")
    sys.exit(0)

from montecarlo import load_data, quick_train  # noqa: E402 - the sibling benchmarks' data, training and helpers
from vs_aihwkit import accuracy, agreement, rpu_config, tiles  # noqa: E402

from neft import Crossbar, devices, make_generator, models, run_seed  # noqa: E402
from neft.evaluation import montecarlo  # noqa: E402

TIMES = {"1 h": 3600.0, "1 day": 86400.0, "1 year": 365.0 * 86400.0}  # s after programming (aihwkit t_inference)


class Feed:
    """While active, aihwkit's PCM noise model draws its standard normals from ``draws`` (a list of tensors, taken
    in order, each with as many elements as the tensor aihwkit asks a draw for) instead of torch's generator.

    Raises:
        AssertionError: a draw of the wrong size, or draws left over or missing when the block ends.
    """

    def __init__(self, draws: list[torch.Tensor]):
        self.draws = list(draws)

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        assert self.draws, "aihwkit asked for more draws than neft gave"
        z = self.draws.pop(0)
        assert z.numel() == like.numel(), f"draw of {z.numel()} for a tensor of {tuple(like.shape)}"
        return z.reshape(like.shape).to(like.dtype)

    def __enter__(self) -> Feed:
        self.saved, aihwkit_pcm.randn_like = aihwkit_pcm.randn_like, self
        return self

    def __exit__(self, *exc) -> None:
        aihwkit_pcm.randn_like = self.saved
        assert exc[0] is not None or not self.draws, f"{len(self.draws)} draws left over"


class NeftConventions(aihwkit_pcm.PCMLikeNoiseModel):
    """aihwkit's ``PCMLikeNoiseModel`` laws (its own methods, every draw where it takes it) with neft's two conventions
    instead of aihwkit's (docs/method.md, 'Conductance-dependent device laws'): conductances are clipped at
    ``g_max`` too, and drift and 1/f read noise act on the two programmed devices of each pair, where aihwkit's
    ``apply_drift_noise`` first splits the programmed weight again (one device at ``|w| * scale``, one at 0)."""

    def apply_programming_noise_to_conductance(self, g_target):
        return super().apply_programming_noise_to_conductance(g_target).clamp_(max=self.g_max)

    def apply_drift_noise_to_conductance(self, g_prog, drift_noise_param, t_inference):
        return super().apply_drift_noise_to_conductance(g_prog, drift_noise_param, t_inference).clamp_(max=self.g_max)

    def apply_programming_noise(self, weights):
        """As aihwkit's, but keeps each programmed device's conductance with its drift exponent."""
        targets, params = self.g_converter.convert_to_conductances(weights)
        programmed, kept = [], []
        for g_target in targets:
            programmed.append(self.apply_programming_noise_to_conductance(g_target))
            kept.append((self.generate_drift_coefficients(g_target), programmed[-1], params))
        return self.g_converter.convert_back_to_weights(programmed, params), kept

    def apply_drift_noise(self, weights, drift_noise_parameters, t_inference):
        drifted = [self.apply_drift_noise_to_conductance(g, nu, t_inference) for nu, g, _ in drift_noise_parameters]
        return self.g_converter.convert_back_to_weights(drifted, drift_noise_parameters[0][2])


def pcm_config(noise_model=None):
    """aihwkit 1.2's PCM chip (``noise_model``, default ``PCMLikeNoiseModel()``) with nothing else (see the module
    docstring)."""
    return rpu_config(noise_model=noise_model or aihwkit_pcm.PCMLikeNoiseModel(),
                      drift_compensation=GlobalDriftCompensation())


def aihwkit_state(analog) -> dict:
    """``{neft weight name: (the tile's effective matrix [out, fan_in], its compensation factor alpha)}``: aihwkit
    scales the tile's output by alpha (the bias is digital, added after), i.e. the matrix."""
    return {name: (tile.tile.get_weights() * tile.alpha, tile.alpha) for name, tile in tiles(analog).items()}


def aihwkit_chip(analog, images, labels, batch_size: int, program: list | None = None,
                 reads: dict | None = None, states: tuple = ("programmed", *TIMES)) -> dict:
    """One aihwkit chip: ``{state: {"accuracy", "weights", "alpha"}}`` for each of ``states`` ("programmed" and the
    labels of :data:`TIMES`); ``program`` and ``reads[label]`` are the draws to feed (:class:`Feed`), None: aihwkit's
    own. Every read time in ``states`` drifts the chip once, after programming, in :data:`TIMES` order."""
    def read(label: str | None) -> dict:
        state = aihwkit_state(analog)
        return {"accuracy": accuracy(analog, images, labels, batch_size),
                "weights": {name: w for name, (w, _) in state.items()},
                "alpha": {name: a for name, (_, a) in state.items()}}

    with Feed(program) if program is not None else _nothing():
        analog.program_analog_weights()
    for tile in tiles(analog).values():  # programming keeps the previous chip's factor: the fresh chip reads at 1
        tile.__dict__.pop("alpha", None)
        tile.alpha = torch.ones(())
    result = {"programmed": read(None)} if "programmed" in states else {}
    for label, seconds in ((label, seconds) for label, seconds in TIMES.items() if label in states):
        with Feed(reads[label]) if reads is not None else _nothing():
            analog.drift_analog_weights(seconds)
        result[label] = read(label)
    return result


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def self_check(model, images, labels, args) -> float:
    """Feed aihwkit the very normals its own generator would draw: the chip must be unchanged (checks :class:`Feed`
    and the draw order above). Returns the largest accuracy difference in points (must be 0)."""
    analog = convert_to_analog(copy.deepcopy(model), pcm_config()).eval()
    torch.manual_seed(args.seed)
    own = aihwkit_chip(analog, images, labels, args.batch_size)
    torch.manual_seed(args.seed)
    matrices = [tile.tile.get_weights() for tile in tiles(analog).values()]
    program = [torch.randn_like(m) for m in matrices for _ in range(4)]
    reads = {label: [torch.randn_like(m) for m in matrices for _ in range(2)] for label in TIMES}
    fed = aihwkit_chip(analog, images, labels, args.batch_size, program, reads)
    worst = 0.0
    for key in own:
        worst = max(worst, abs(own[key]["accuracy"] - fed[key]["accuracy"]))
        for name, w in own[key]["weights"].items():
            assert torch.equal(w, fed[key]["weights"][name]), (key, name)
    return worst


def neft_draws(crossbar, chip_seed: int, kinds: int) -> list:
    """The standard normals neft's chip ``chip_seed`` draws, re-drawn in neft's documented order
    (:mod:`neft.chip.effects`: per layer in model order, ``kinds`` tensors ``[2, n, *shape]``: programming, drift
    exponent, then frozen 1/f read noise), as aihwkit asks for them: ``(program, reads)`` with ``program`` the
    programming error and drift exponent of ``G+``, then of ``G-``, per tile, and ``reads`` the 1/f draws of ``G+``
    then ``G-`` per tile (empty for ``kinds`` 2)."""
    generator = make_generator(chip_seed)
    program, reads = [], []
    for w in crossbar.weights().values():
        z = [torch.randn((2, crossbar.device_model.devices_per_weight, *w.shape), generator=generator)
             for _ in range(kinds)]
        program += [z[0][0], z[1][0], z[0][1], z[1][1]]
        reads += [z[2][0], z[2][1]] if kinds > 2 else []
    return program, reads


def neft_state(crossbar, chip_seed: int, images=None, labels=None, batch_size: int = 0) -> dict:
    """neft's chip ``chip_seed`` on ``crossbar``'s device model: ``{"accuracy" (with ``images``; else None),
    "weights": {name: [out, fan_in]}, "alpha": {name: the compensation factor}}``; alpha from the same chip drawn
    without compensation (no draw depends on it), the least-squares ratio of the two."""
    chip = crossbar.sample_chip(0.0, make_generator(chip_seed))
    plain = Crossbar(crossbar.model, crossbar.device_model.with_chip(drift_compensation=False,
                                                                     drift_compensation_input="ones"))
    bare = plain.sample_chip(0.0, make_generator(chip_seed))
    weights, alpha = {}, {}
    for name, w in crossbar.weights().items():
        weights[name] = (w + chip[name]).detach().reshape(w.shape[0], -1)
        uncompensated = (w + bare[name]).detach().reshape(w.shape[0], -1)
        alpha[name] = (weights[name] * uncompensated).sum() / uncompensated.square().sum()
    if images is None:
        return {"accuracy": None, "weights": weights, "alpha": alpha}
    with torch.no_grad():
        correct = sum(int((crossbar.forward(images[s:s + batch_size], chip=chip).argmax(1)
                           == labels[s:s + batch_size]).sum()) for s in range(0, len(labels), batch_size))
    return {"accuracy": 100.0 * correct / len(labels), "weights": weights, "alpha": alpha}


def difference(ours: dict, theirs: dict) -> dict:
    """Largest differences of one chip state: weights in units of the layer's max|W|, alpha relative, accuracy."""
    weight = max(float((ours["weights"][n] - w).abs().max() / w.abs().max()) for n, w in theirs["weights"].items())
    alpha = max((abs(float(ours["alpha"][n]) / float(a) - 1.0) for n, a in theirs["alpha"].items() if a is not None),
                default=0.0)
    return {"weight": weight, "alpha": alpha,
            "accuracy": None if ours["accuracy"] is None else abs(ours["accuracy"] - theirs["accuracy"])}


def same_draws(model, images, labels, args) -> dict:
    """Chip for chip with neft's draws, for each of :func:`variants`: ``{variant: {state label: {"weight", "alpha",
    "accuracy", "equal"}}}``, the largest difference over chips (:func:`difference`) and how many chips have the same
    accuracy in both tools."""
    return {key: same_draws_of(model, images, labels, args, noise, preset)
            for key, (noise, preset) in variants(args.variants).items()}


def same_draws_of(model, images, labels, args, noise, preset) -> dict:
    """:func:`same_draws` of one variant: neft's ``preset`` against aihwkit's noise model ``noise``."""
    programmed = Crossbar(model, preset.with_chip(read_noise_1f_per_read=True))  # no frozen 1/f draw: programmed
    at = {label: Crossbar(model, preset.with_chip(drift_time=seconds + preset.drift_t0))
          for label, seconds in TIMES.items()}
    engine = {label: montecarlo.evaluate(model, images, labels, [0.0], runs=args.chips, seed=args.seed,
                                         device_model=crossbar.device_model, batch_size=args.batch_size,
                                         precision="fp32", progress=False)["per_sigma"][0]["accuracy"]["per_run"]
              for label, crossbar in at.items()}
    analog = convert_to_analog(copy.deepcopy(model), pcm_config(noise)).eval()
    worst = {label: {"weight": 0.0, "alpha": 0.0, "accuracy": 0.0, "equal": 0} for label in ["programmed", *TIMES]}
    for r in range(args.chips):
        chip_seed = run_seed(args.seed, 0.0, r)
        ours = {"programmed": neft_state(programmed, chip_seed, images, labels, args.batch_size),
                **{label: neft_state(crossbar, chip_seed) for label, crossbar in at.items()}}
        for label in TIMES:  # the accuracy of neft's Monte Carlo engine
            ours[label]["accuracy"] = engine[label][r]
        first, _ = neft_draws(programmed, chip_seed, 2)
        program, reads = neft_draws(at["1 h"], chip_seed, 3)
        theirs = {**aihwkit_chip(analog, images, labels, args.batch_size, first, states=("programmed",)),
                  **aihwkit_chip(analog, images, labels, args.batch_size, program,
                                 {label: reads for label in TIMES}, states=tuple(TIMES))}
        for label, state in theirs.items():
            found = difference(ours[label], state)
            for item, value in found.items():
                worst[label][item] = max(worst[label][item], value)
            worst[label]["equal"] += found["accuracy"] == 0
    return worst


def own_draws(model, images, labels, args) -> dict:
    """Each tool draws its own chips: ``{variant: {time label: (neft accuracies, aihwkit accuracies)}}`` for each of
    :func:`variants` (neft from seed + 1, aihwkit from torch's generator seeded ``seed + 1``)."""
    result = {}
    for key, (noise, preset) in variants(args.variants).items():
        neft_side = {label: montecarlo.evaluate(model, images, labels, [0.0], runs=args.chips, seed=args.seed + 1,
                                                device_model=preset.with_chip(drift_time=seconds + preset.drift_t0),
                                                batch_size=args.batch_size, precision="fp32",
                                                progress=False)["per_sigma"][0]["accuracy"]["per_run"]
                     for label, seconds in TIMES.items()}
        analog = convert_to_analog(copy.deepcopy(model), pcm_config(noise)).eval()
        torch.manual_seed(args.seed + 1)
        theirs = [aihwkit_chip(analog, images, labels, args.batch_size, states=tuple(TIMES))
                  for _ in range(args.chips)]
        result[key] = {label: (neft_side[label], [chip[label]["accuracy"] for chip in theirs]) for label in TIMES}
    return result


def variants(names: str = "shipped,physical") -> dict:
    """The pairs compared, ``{label: (aihwkit noise model, neft device model)}``, those of ``names``: ``shipped``,
    aihwkit 1.2's ``PCMLikeNoiseModel`` as shipped against neft's ``PCM-aihwkit`` (which sets aihwkit's conventions
    ``clip_g_max = false``, ``drift_of = "resplit"``); ``physical``, :class:`NeftConventions` (aihwkit's laws
    clipped at g_max, drifting the programmed devices) against ``PCM-aihwkit`` with neft's defaults for both
    (``clip_g_max = true``, ``drift_of = "devices"``, the path every other preset takes)."""
    preset = devices.get("PCM-aihwkit")
    pairs = {"shipped": ("as shipped", aihwkit_pcm.PCMLikeNoiseModel, preset),
             "physical": ("physical conventions", NeftConventions,
                          preset.with_chip(clip_g_max=True, drift_of="devices"))}
    return {label: (noise(), model) for name, (label, noise, model) in pairs.items() if name in names.split(",")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--models", default="lenet5:1:mnist-5k,vgg8:0.25:fashion-mnist:30:200",
                        help="comma list of name:width:data set[:chips[:images]] (chips and test images override "
                             "--chips and --images for that network; default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="folder of the data sets (default: neft's search order)")
    parser.add_argument("--images", type=int, default=500, help="test images per chip (default: %(default)s)")
    parser.add_argument("--chips", type=int, default=40, help="chips per tool and comparison (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=500, help="test images per forward (default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=400,
                        help="Adam steps before evaluating (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training, data and chip seed (default: %(default)s)")
    parser.add_argument("--parts", default="same,own", help="same draws, own draws or both (default: %(default)s)")
    parser.add_argument("--variants", default="shipped,physical",
                        help="shipped (aihwkit as shipped against PCM-aihwkit), physical (both under neft's default "
                             "conventions) or both (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="LeNet-5 only, 10 chips, 200 images (about a minute)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.chips, args.images = "lenet5:1:mnist-5k", 10, 200
    torch.set_num_threads(args.threads)
    import aihwkit

    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}; torch "
          f"{torch.__version__}, aihwkit {aihwkit.__version__}; {args.train_steps} training steps, {args.threads} "
          "thread(s)", flush=True)
    chips, count = args.chips, args.images
    for spec in args.models.split(","):
        name, width, kind, *rest = spec.split(":")
        args.chips, args.images = (int(rest[0]) if rest else chips), (int(rest[1]) if len(rest) > 1 else count)
        train_x, train_y, images, labels = load_data(kind, args.images, args.seed, args.data_dir)
        torch.manual_seed(args.seed)
        started = time.perf_counter()
        model = quick_train(models.create(name, 10, images.shape[1], float(width)), train_x, train_y,
                            args.train_steps, args.seed)
        print(f"{name} width {width} on {kind}, {args.chips} chips x {args.images} test images: trained in "
              f"{time.perf_counter() - started:.0f} s, clean accuracy "
              f"{accuracy(model, images, labels, args.batch_size):.2f} %; feed self-check: "
              f"{self_check(model, images, labels, args):.2f} points", flush=True)
        started = time.perf_counter()
        report(f"{name} w{float(width):g}", same_draws(model, images, labels, args) if "same" in args.parts else {},
               own_draws(model, images, labels, args) if "own" in args.parts else {}, args.chips)
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def report(title: str, same: dict, own: dict, chips: int) -> None:
    """Print one network's two tables (markdown), each only when measured."""
    if same:
        same_table(title, same, chips)
    if own:
        own_table(title, own)


def same_table(title: str, same: dict, chips: int) -> None:
    print(f"\n{title}, same draws: largest difference over chips and layers (weights in units of the layer's "
          "max|W|; alpha relative; accuracy in points: programmed through neft's Crossbar, the read times through "
          "its Monte Carlo engine)")
    print("| aihwkit | state | weights | alpha | accuracy | chips with equal accuracy |\n"
          "|---|---|---:|---:|---:|---:|")
    for variant, states in same.items():
        for label, worst in states.items():
            print(f"| {variant} | {label} | {worst['weight']:.2e} | {worst['alpha']:.2e} | {worst['accuracy']:.2f} "
                  f"| {worst['equal']} of {chips} |")


def own_table(title: str, own: dict) -> None:
    print(f"\n{title}, own draws: accuracy over chips (mean +- std, %), p-values, agree = all three > 0.05")
    print("| aihwkit | read time | neft | aihwkit | Welch | Levene | KS | agree |\n"
          "|---|---|---:|---:|---:|---:|---:|---|")
    for variant, times in own.items():
        for label, (ours, theirs) in times.items():
            p = agreement(ours, theirs)
            print(f"| {variant} | {label} | {statistics.mean(ours):.2f} +- {statistics.stdev(ours):.2f} | "
                  f"{statistics.mean(theirs):.2f} +- {statistics.stdev(theirs):.2f} | {p['welch']:.2f} | "
                  f"{p['levene']:.2f} | {p['ks']:.2f} | {'yes' if min(p.values()) > 0.05 else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
