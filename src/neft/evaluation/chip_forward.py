"""How the Monte Carlo engine runs one test batch through K programmed chips, fast
(docs/method.md, 'Noise timing').

The engine (:mod:`neft.evaluation.montecarlo`) evaluates the same network with many perturbed weight sets. The
arithmetic is fixed; what this module chooses is how it is executed on the evaluation device:

* **Memory layout.** On CPU, oneDNN convolutions and max-pooling run faster on channels_last (NHWC) tensors:
  measured 1.3x for VGG8 on a 2-core AVX2 machine. The images and the 4-D conv weights are converted once; the
  layout is kept only if a dry run gives the same logits as the default layout (a model that calls ``.view`` on
  an activation, for instance, falls back to NCHW). On CUDA the default layout is kept.
* **Compilation.** ``torch.compile`` (inductor) fuses ReLU, BatchNorm and pooling around the convolutions and
  matmuls: measured 1.3-1.5x over eager channels_last for LeNet-5, 1.1-1.35x for VGG8 width 0.25 and 1.05x for
  VGG8 width 1 on CPU, after a one-off compile of ~20 s (a few seconds later, from inductor's on-disk cache).
  Batches are padded to the full batch size so one compiled graph serves the whole test set. If compilation fails
  (no C++ compiler, unsupported operator) or its logits disagree with eager ones, evaluation continues eagerly
  with a warning.
* **Chips per pass.** K > 1 chips are evaluated together by ``torch.func.vmap`` over stacked weights; K = 1 is a
  plain ``functional_call``. vmap is not always faster, even on GPUs (one H200, VGG8 width 1: vmap over 3 chips
  ran at 0.58x of one chip per pass), so :func:`choose_chips_per_pass` times both on the first batch. A model
  that vmap cannot run (random operations such as test-time dropout, data-dependent Python control flow such as
  ``if x.sum() > 0``) is evaluated one chip per pass, with a warning.

Stored parameters are never modified: perturbed weights reach the model through ``functional_call``.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.utils.flop_counter import FlopCounterMode

from neft.chip.circuit import Circuit
from neft.chip.crossbar import Crossbar

__all__ = ["ChipForward", "choose_chips_per_pass", "forward_flops", "MEMORY_FORMATS"]

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
_CHECK_IMAGES = 8  # images in the dry runs that validate the layout and the compiled graph


def forward_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one clean forward of ``model`` on ``example`` ``[B, ...]`` (counted by ``FlopCounterMode``)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    return counter.get_total_flops()


def _layout(tensor: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    return tensor.contiguous(memory_format=memory_format) if tensor.dim() == 4 else tensor


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"


def choose_chips_per_pass(crossbar: Crossbar, example: torch.Tensor, max_chips: int,
                          memory_format: str = "auto") -> int:
    """Chips per pass for ``chips_per_pass="auto"``: never slower per chip than one chip per pass.

    On CPU 1 (vmap over 4 chips was slower than one chip at a time for LeNet-5 and VGG8 in every CPU benchmark,
    benchmarks/README.md). On CUDA the candidate K is as many chips as fit in a quarter of the free GPU memory
    (fp32 weights plus twice the activations of the batch), at most 64 and ``max_chips``; K is kept only if an
    fp32 forward of ``example`` through K stacked chips takes less time per chip than through one chip (each
    timed after a warm-up, see :meth:`ChipForward.seconds_per_chip`), and if vmap can run the model.

    Args:
        crossbar: the network, in eval mode, on the evaluation device.
        example: the first test batch ``[B, ...]`` on the evaluation device, B = the batch size used.
        max_chips: upper bound on the result (e.g. the Monte Carlo runs), >= 1.
        memory_format: as :class:`ChipForward`; the timing runs in that layout.

    Returns:
        chips per pass, between 1 and ``max_chips``.

    Raises:
        ValueError: for an unknown ``memory_format`` (on CUDA).
    """
    if example.device.type != "cuda" or max_chips < 2:
        return 1
    candidate = _chips_that_fit(crossbar.model, example, max_chips)
    if candidate < 2:
        return 1
    return _faster(ChipForward(crossbar, example, chips_per_pass=candidate, batch_size=example.shape[0],
                               memory_format=memory_format), example)


def _chips_that_fit(model: nn.Module, x: torch.Tensor, max_chips: int) -> int:
    """Chips whose fp32 weights and activations for the batch ``x`` fit in a quarter of the free CUDA memory."""
    sizes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel())) for m in model.modules()
             if not list(m.children())]
    with torch.no_grad():
        model(x[:1])
    for hook in hooks:
        hook.remove()
    per_chip = 4 * (sum(p.numel() for p in model.parameters()) + 2 * x.shape[0] * sum(sizes))
    free, _ = torch.cuda.mem_get_info(x.device)
    return int(max(1, min(64, max_chips, free // 4 // per_chip)))


def _faster(forward: ChipForward, example: torch.Tensor) -> int:
    """``forward.chips_per_pass`` or 1, whichever takes less time per chip on ``example`` (1 on a tie)."""
    chips = forward.chips_per_pass
    if chips == 1 or forward.seconds_per_chip(example, 1) <= forward.seconds_per_chip(example, chips):
        return 1
    return chips


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mean_seconds(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean wall-clock seconds of ``repeats`` calls of ``run`` (without gradients) after one untimed warm-up call
    (cuDNN algorithm choice, allocator), with CUDA on ``device`` synchronised around them."""
    with torch.no_grad():
        run()
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            run()
        _synchronize(device)
    return (time.perf_counter() - started) / repeats


def _wants_channels_last(model: nn.Module, example: torch.Tensor, memory_format: str) -> bool:
    """Whether :class:`ChipForward` tries channels_last (a dry run decides): asked for, or ``"auto"`` on CPU for a
    model with 2-D convolutions, and 4-D inputs ``example``."""
    wants_nhwc = memory_format == "channels_last" or (
        memory_format == "auto" and example.device.type == "cpu"
        and any(isinstance(m, nn.Conv2d) for m in model.modules())
    )
    return wants_nhwc and example.dim() == 4


def _check_compiled(compiled: torch.Tensor, reference: torch.Tensor) -> None:
    """Refuse compiled logits that differ from the eager ``reference`` logits of the same images (float32).

    Raises:
        RuntimeError: naming the largest difference.
    """
    if not torch.allclose(compiled, reference, rtol=1e-2, atol=1e-3):
        raise RuntimeError(f"compiled logits differ from eager ones by up to "
                           f"{(compiled - reference).abs().max().item():.3g}")


class ChipForward:
    """Logits of K programmed chips on one batch: ``forward(weights, x) -> [K, B, C]``.

    Args:
        crossbar: the network (``crossbar.model``, in eval mode, on the evaluation device; never modified) and its
            mapped weights.
        example: a batch ``[B, ...]`` of real inputs on the evaluation device (its first images run the dry runs).
        chips_per_pass: K, chips evaluated together (vmap when K > 1). If vmap cannot run the model on the first
            images (random operations, data-dependent control flow), K becomes 1 with one ``RuntimeWarning``
            naming the reason; :attr:`chips_per_pass` holds the K in use.
        batch_size: the batch size the caller uses; compiled forwards pad shorter batches to it.
        memory_format: ``"auto"`` (channels_last on CPU for 4-D inputs of a model with 2-D convolutions, if a dry
            run agrees with NCHW), ``"channels_last"`` (same check, but on any device) or ``"contiguous"``.
        compile: run the forward through ``torch.compile``; with read noise per read (``circuit`` with
            ``read_sigma`` > 0) it is not used, with one ``RuntimeWarning`` (docs/method.md, 'The crossbar circuit').
        circuit: the :class:`neft.chip.circuit.Circuit` the mapped layers run through (applied by the caller, around
            every call); with read noise, vmap passes each chip its position in the pass
            (:meth:`neft.chip.circuit.Circuit.chip`) and runs with ``randomness="same"`` (the noise is drawn per chip
            from its own seeds, outside vmap's random streams).

    Raises:
        ValueError: for an unknown ``memory_format``.
    """

    def __init__(
        self,
        crossbar: Crossbar,
        example: torch.Tensor,
        *,
        chips_per_pass: int = 1,
        batch_size: int = 1000,
        memory_format: str = "auto",
        compile: bool = False,
        circuit: Circuit | None = None,
    ) -> None:
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(f"unknown memory_format {memory_format!r}; choose one of {', '.join(MEMORY_FORMATS)}")
        self.crossbar, self.chips_per_pass, self.batch_size = crossbar, chips_per_pass, batch_size
        self.circuit = circuit
        model = crossbar.model
        self.memory_format = torch.contiguous_format
        if _wants_channels_last(model, example, memory_format):
            with circuit.bypassed() if circuit is not None else contextlib.nullcontext():
                if self._agrees(example[:_CHECK_IMAGES], torch.channels_last):
                    self.memory_format = torch.channels_last
        if chips_per_pass > 1:
            reason = self._vmap_error(example[:_CHECK_IMAGES])
            if reason:
                warnings.warn(f"chips_per_pass={chips_per_pass}: torch.func.vmap cannot run "
                              f"{type(model).__name__} ({reason}); evaluating one chip per pass instead",
                              RuntimeWarning, stacklevel=2)
                self.chips_per_pass = 1
        if compile and circuit is not None and circuit.settings.reads:
            warnings.warn("compile=True: torch.compile is not used with read noise per read (each read's draw "
                          "breaks the graph in every mapped layer, and the pieces recompile per layer and tile "
                          "without a speed-up); evaluating without compilation", RuntimeWarning, stacklevel=2)
            compile = False
        self._compiled = torch.compile(self._eager, dynamic=False) if compile else None
        self._compile_checked = False

    @property
    def compiled(self) -> bool:
        """Whether forwards go through ``torch.compile`` (False after a failed compile)."""
        return self._compiled is not None

    @property
    def layout(self) -> str:
        """``"channels_last"`` or ``"contiguous"``: the memory layout in use."""
        return "channels_last" if self.memory_format == torch.channels_last else "contiguous"

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` converted once to the chosen memory layout (same values and shape)."""
        return _layout(images, self.memory_format)

    def weights(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One chip's perturbed weights ``{name: w + dW}`` in the chosen memory layout."""
        return {name: _layout(w, self.memory_format) for name, w in weights.items()}

    def _agrees(self, x: torch.Tensor, memory_format: torch.memory_format) -> bool:
        """Whether the model gives the same logits in ``memory_format`` as in NCHW (and does not fail)."""
        model, clean = self.crossbar.model, {name: w.detach() for name, w in self.crossbar.weights().items()}
        with torch.no_grad():
            reference = functional_call(model, clean, (x,))
            try:
                other = functional_call(model, {k: _layout(w, memory_format) for k, w in clean.items()},
                                        (_layout(x, memory_format),))
            except RuntimeError:
                return False
        return other.shape == reference.shape and torch.allclose(other, reference, rtol=1e-3, atol=1e-4)

    def _clean(self) -> dict[str, torch.Tensor]:
        """The unperturbed mapped weights, detached, in the chosen layout."""
        return self.weights({name: w.detach() for name, w in self.crossbar.weights().items()})

    def _vmap_error(self, x: torch.Tensor) -> str | None:
        """Why vmap over two chips fails on the images ``x`` (first line of the error), or None if it runs."""
        try:
            with torch.no_grad():
                self._eager([self._clean()] * 2, self.images(x))
        except RuntimeError as error:  # vmap's refusals (randomness, data-dependent control flow, .item())
            return _first_line(error)
        return None

    def seconds_per_chip(self, x: torch.Tensor, chips: int, repeats: int = 3) -> float:
        """Measured wall-clock seconds per chip of an eager forward of ``chips`` stacked copies of the clean
        weights on the batch ``x`` ``[B, ...]``: one untimed warm-up forward (cuDNN algorithm choice, allocator),
        then the mean of ``repeats`` forwards, with CUDA synchronised around them. ``chips`` > 1 uses vmap."""
        weights, x = [self._clean()] * chips, self.images(x)
        return _mean_seconds(lambda: self._eager(weights, x), x.device, repeats) / chips

    def _eager(self, weights: list[dict[str, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        model = self.crossbar.model
        if len(weights) == 1:
            return functional_call(model, weights[0], (x,)).unsqueeze(0)
        stacked = {name: torch.stack([w[name] for w in weights]) for name in weights[0]}  # per-chip fixes too
        if self.circuit is None or not self.circuit.settings.active:
            return vmap(lambda params, inputs: functional_call(model, params, (inputs,)), in_dims=(0, None))(stacked, x)

        def chip(params, index, inputs):  # the circuit knows it runs under vmap, and the chip (for read noise)
            with self.circuit.chip(index):
                return functional_call(model, params, (inputs,))
        index = torch.arange(len(weights), device=x.device)
        randomness = "same" if self.circuit.settings.reads else "error"
        return vmap(chip, in_dims=(0, 0, None), randomness=randomness)(stacked, index, x)

    def __call__(self, weights: list[dict[str, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        """Logits ``[K, B, C]`` of the K chips ``weights`` (from :meth:`weights`) on the batch ``x`` ``[B, ...]``
        (in the layout of :meth:`images`)."""
        if self._compiled is None:
            return self._eager(weights, x)
        size, chips = x.shape[0], len(weights)
        if size < self.batch_size:  # one compiled graph for every batch: pad the last one (eval mode: per image)
            x = _layout(torch.cat([x, x[-1:].expand(self.batch_size - size, *x.shape[1:])]), self.memory_format)
        if chips < self.chips_per_pass:  # ... and for every group of chips: repeat the last chip
            weights = weights + [weights[-1]] * (self.chips_per_pass - chips)
        if self._compile_checked:
            return self._compiled(weights, x)[:chips, :size]
        try:  # first compiled call: check it against eager logits of the first images (eval mode: per image)
            logits = self._compiled(weights, x)
            reference = self._eager(weights, x[:_CHECK_IMAGES]).float()
            _check_compiled(logits[:, :_CHECK_IMAGES].float(), reference)
        except Exception as error:  # noqa: BLE001 - any compiler failure: fall back to eager, loudly
            warnings.warn(f"torch.compile could not be used ({_first_line(error)}); "
                          "evaluating without compilation", RuntimeWarning, stacklevel=2)
            self._compiled = None
            return self._eager(weights[:chips], x)[:, :size]
        self._compile_checked = True
        return logits[:chips, :size]
