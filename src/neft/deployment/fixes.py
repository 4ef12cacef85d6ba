"""Fixes for one programmed chip, applied by the Monte Carlo engine between drawing a chip and testing it
(docs/method.md, 'Fixes for one programmed chip').

For every chip, in this fixed order:

1. the chip is drawn (with the write-verified weights of :mod:`neft.deployment.write_verify`, if any);
2. BatchNorm recalibration (``recalibrate_bn`` = N > 0, :mod:`neft.deployment.recalibration`): running statistics
   re-estimated through the chip from the first N of the training images given;
3. the tuned block (``chip_tune`` = STEPS > 0, :mod:`neft.deployment.tuned_block`): tuned for STEPS optimizer steps
   through the chip (with the recalibrated statistics when 2 is on), then written to the chip with verification
   (:func:`neft.chip.crossbar.written_weight_error`: the residual variation and a realistic chip's effects);
4. the chip is tested.

With a fix on, every sigma runs the same procedure: at sigma 0 each chip is the trained network, fixed like any
other. :meth:`ChipFixes.cost` is
what one chip's fixes cost (recorded as ``deployment_cost`` in ``results.json``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

from neft.chip.crossbar import Crossbar, make_generator, written_weight_error
from neft.common.errors import SettingError, check_count
from neft.common.seeds import fix_seed
from neft.deployment import tuned_block as chiptune
from neft.deployment.recalibration import batchnorm_layers, recalibrate_bn

__all__ = ["ChipFixes", "check_settings", "check_tuning_used", "TUNING_SETTINGS"]

TUNING_SETTINGS = ("chip_tune_taps", "chip_tune_lr", "chip_tune_batch")  # settings of the tuned block only


def check_settings(config) -> None:
    """Check the fix settings of an :class:`neft.evaluation.config.EvalConfig`: ``recalibrate_bn`` and ``chip_tune``
    integers >= 0, ``chip_tune_batch`` an integer >= 1, ``chip_tune_lr`` a finite number > 0, ``chip_tune_taps``
    None or a list of module names, and none of them changed from its default while ``chip_tune`` is 0
    (:func:`check_tuning_used`).

    Raises:
        SettingError: naming the setting.
    """
    check_count("recalibrate_bn", config.recalibrate_bn, 0, "training images per chip; 0 = off")
    check_count("chip_tune", config.chip_tune, 0, "optimizer steps per chip; 0 = off")
    check_count("chip_tune_batch", config.chip_tune_batch, 1, "training images per tuning step")
    lr = config.chip_tune_lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise SettingError("chip_tune_lr", f"chip_tune_lr must be a finite number > 0 (Adam's learning rate, e.g. "
                                           f"0.01), got {lr!r}")
    taps = config.chip_tune_taps
    if taps is not None and (isinstance(taps, str) or not all(isinstance(t, str) and t for t in taps)):
        raise SettingError("chip_tune_taps", f"chip_tune_taps must be a list of module names, e.g. ['features.1'], "
                                             f"got {taps!r}")
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    check_tuning_used(config, [name for name in TUNING_SETTINGS if getattr(config, name) != defaults[name]])


def check_tuning_used(config, given: Iterable[str]) -> None:
    """Refuse settings of the tuned block (``given``: names from :data:`TUNING_SETTINGS`, e.g. those changed from
    their defaults or written on the command line) while the block is off (``config.chip_tune`` 0): they would have
    no effect.

    Raises:
        SettingError: naming the first such setting (and the others), before any work.
    """
    unused = [name for name in TUNING_SETTINGS if name in set(given)]
    if unused and not config.chip_tune:
        flags = ", ".join(f"{name} (--{name.replace('_', '-')})" for name in unused)
        raise SettingError(unused[0], f"{flags} set{'s' if len(unused) == 1 else ''} the tuned block, which is off "
                                      "(chip_tune 0), so it would have no effect: turn the block on with chip_tune="
                                      "STEPS (--chip-tune STEPS) or drop it")


class ChipFixes:
    """The per-chip fixes of one evaluation.

    Args:
        crossbar: the network and its device model (the block is written with the same device model).
        config: the checked :class:`neft.evaluation.config.EvalConfig` (``recalibrate_bn``, ``chip_tune``,
            ``chip_tune_taps``, ``chip_tune_lr``, ``chip_tune_batch``, ``verified_sigma``, ``write_verify``).
        images: training images ``[N, ...]`` on the evaluation device (no augmentation); required when a fix is
            on. BatchNorm recalibration uses the first ``recalibrate_bn`` of them, the block draws its batches
            from all of them.
        labels: their classes ``[N]`` (for the block).
        verified: the write-verify mask (to count the verified weights), or None.

    Raises:
        SettingError: naming the setting, before any chip is drawn: a fix without training images, more
            recalibration images than given, BatchNorm recalibration of a model without BatchNorm, or block taps
            that are missing, unknown or of different channel counts.
    """

    def __init__(self, crossbar: Crossbar, config, images: torch.Tensor | None, labels: torch.Tensor | None,
                 verified: dict | None = None) -> None:
        self.crossbar, self.config = crossbar, config
        self.images, self.labels = images, labels
        model = crossbar.model
        self.mapped = sum(w.numel() for w in crossbar.weights().values())
        self.verified = int(sum(int(m.sum()) for m in verified.values())) if verified else 0
        self.taps = list(config.chip_tune_taps or chiptune.default_taps(model))
        self.block_weights = 0
        for setting, on in (("recalibrate_bn", config.recalibrate_bn), ("chip_tune", config.chip_tune)):
            if on and (images is None or labels is None or not len(images)):
                raise SettingError(setting, f"{setting} fixes each chip with training images: pass fix_images= and "
                                            "fix_labels= (neft evaluate and runs.evaluate_run pass the run's)")
        if config.recalibrate_bn:
            if not batchnorm_layers(model):
                raise SettingError("recalibrate_bn", f"{type(model).__name__} has no BatchNorm layer to "
                                                     "recalibrate; drop recalibrate_bn (--recalibrate-bn)")
            if config.recalibrate_bn > len(images):
                raise SettingError("recalibrate_bn", f"recalibrate_bn asks for {config.recalibrate_bn} training "
                                                     f"images, only {len(images)} are given")

    @property
    def active(self) -> bool:
        """Whether any fix is on."""
        return bool(self.config.recalibrate_bn or self.config.chip_tune)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The tuned block inserted in the model for the duration (nothing when ``chip_tune`` is 0); raises as
        :func:`neft.deployment.tuned_block.installed`."""
        if not self.config.chip_tune:
            yield
            return
        with chiptune.installed(self.crossbar.model, self.taps, self.images[:1]) as block:
            self.block_weights = block.weight.numel()
            yield

    def extras(self, weights: dict[str, torch.Tensor], chip_seed: int, sigma: float) -> dict[str, torch.Tensor]:
        """What the fixes add to one chip's forward: recalibrated BatchNorm statistics and the written block
        weight (``neft_chip_block_weight``), as ``{name: tensor}`` for ``functional_call``; empty when no fix is
        on.

        Args:
            weights: the chip's perturbed crossbar weights ``{name: w + dW}``.
            chip_seed: the chip's seed (:func:`neft.common.seeds.run_seed`); the tuning batches and the block's residual
                write noise come from :func:`neft.common.seeds.fix_seed` of it.
            sigma: the chip's relative device variation.
        """
        config, model, extras = self.config, self.crossbar.model, {}
        if config.recalibrate_bn:
            extras.update(recalibrate_bn(model, weights, self.images[:config.recalibrate_bn], config.batch_size))
        if config.chip_tune:
            generator = make_generator(fix_seed(chip_seed))
            weight = chiptune.tune(model, {**weights, **extras}, self.images, self.labels, config.chip_tune,
                                   batch_size=config.chip_tune_batch, lr=config.chip_tune_lr, generator=generator)
            # written with write-verify: the residual variation, and a realistic chip's quantization, stuck devices
            # and drift (verification does not remove them)
            weight = weight + written_weight_error(self.crossbar.device_model, weight, sigma, generator,
                                                   config.verified_sigma)
            extras[chiptune.WEIGHT] = weight
        return extras

    def cost(self) -> dict:
        """Per-chip deployment cost: ``{"mapped_weights", "write_verify": {"weights_verified", "fraction"},
        "recalibrate_bn": {"images"}, "chip_tune": {"optimizer_steps", "images", "weights_written_verified",
        "fraction_of_weights", "taps"}}`` (images counted with repetition; the block's fraction is of the
        backbone's mapped weights plus the block's)."""
        config = self.config
        tuned = config.chip_tune > 0
        return {
            "mapped_weights": self.mapped,
            "write_verify": {"weights_verified": self.verified, "fraction": self.verified / self.mapped},
            "recalibrate_bn": {"images": config.recalibrate_bn},
            "chip_tune": {"optimizer_steps": config.chip_tune, "images": config.chip_tune * config.chip_tune_batch,
                          "weights_written_verified": self.block_weights,
                          "fraction_of_weights": self.block_weights / (self.mapped + self.block_weights),
                          "taps": self.taps if tuned else []},
        }
