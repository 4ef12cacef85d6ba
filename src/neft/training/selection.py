"""Choosing the best epoch: the selection split (a validation split held out of the training images, or the test
set with ``select_on="test"``), the clean and noisy accuracies that score each epoch on it, and the best
``checkpoint.pt`` with what it records beside the weights (docs/method.md, 'Training recipe').
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from neft import data
from neft.chip import devices
from neft.chip.circuit_settings import FIELDS
from neft.common.compute import eval_mode
from neft.evaluation import montecarlo
from neft.store import checkpoint
from neft.training.config import TrainConfig


def _validation_size(config: TrainConfig) -> int | float:
    """Images held out for selection: the fraction of the training images used (of ``train_subset`` if given)."""
    if config.select_on == "test":
        return 0
    if config.train_subset is None:
        return config.validation
    return max(1, round(config.validation * config.train_subset))


def _accuracy(model, dataset, split, device, batch_size=1000) -> float:
    """Clean top-1 accuracy (percent) of ``model`` in eval mode on ``split``."""
    correct = 0
    with torch.no_grad(), eval_mode(model):
        for x, y in dataset.batches(split, batch_size, device=device):
            correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / dataset.size(split)


def chip_accuracy(model, images, labels, config, runs: int, calibration_images=None, **options) -> dict:
    """Accuracy over ``runs`` Monte Carlo chips at ``config.sigma`` with the run's device model and circuit, on the
    preprocessed ``images`` ``[N, C, H, W]`` and ``labels`` ``[N]`` (converter ranges calibrated on
    ``calibration_images`` where the circuit calibrates any): the ``accuracy`` summary of
    :func:`neft.evaluation.montecarlo.evaluate` (percent: ``mean``, ``std``, ``p1``, ``p5`` ...). ``options``: its
    other settings (``seed``, ``compile``). Scores the training epochs and rcg's search points alike.

    Raises:
        ValueError: as :func:`neft.evaluation.montecarlo.evaluate` (an invalid circuit or device model).
    """
    result = montecarlo.evaluate(model, images, labels, [config.sigma], runs=runs, device_model=config.device_model,
                                 progress=False, calibration_images=calibration_images,
                                 **{name: getattr(config, name) for name in FIELDS}, **options)
    return result["per_sigma"][0]["accuracy"]


def _chips_differ(config: TrainConfig) -> bool:
    """Whether the run's chips differ from its clean network, so that epochs are scored on noisy validation chips:
    variation (``sigma`` > 0), a realistic chip (quantized mapping with its programming noise, stuck devices and
    drift; read noise) or an active circuit (converters, noise per read, periphery, IR drop), at sigma 0 too. A
    network trained through aihwkit's periphery is then chosen by how it reads on that chip, not by its ideal
    layers, which it never trained on."""
    chip = config.chip()
    return (config.sigma > 0 or chip.device_model.quantize or chip.device_model.read_sigma > 0
            or chip.circuit.active)


@dataclass
class Selection:
    """The split that chooses the best epoch, preprocessed once: ``images`` ``[N, C, H, W]`` on the run's device and
    ``labels`` ``[N]``; ``metadata`` is what the best ``checkpoint.pt`` records beside the weights."""

    split: str
    images: torch.Tensor
    labels: torch.Tensor
    metadata: dict
    noisy: bool

    @classmethod
    def of(cls, config: TrainConfig, dataset: data.ImageDataset, device: torch.device, recorded: dict) -> Selection:
        """The selection split of ``dataset`` for ``config``; ``recorded``: :func:`neft.training.config.record`."""
        split = "val" if config.select_on == "val" else "test"
        metadata = {
            "model": {"name": config.model, "num_classes": dataset.num_classes,
                      "in_channels": dataset.in_channels, "width": config.width, "args": config.model_args,
                      "source": recorded["model_source"]},
            "dataset": dataset.name, "dataset_stats": recorded["dataset"], "method": config.method,
            "teacher_sha256": (recorded["teacher"] or {}).get("sha256"),
            "sigma": config.sigma,
            "sigma_block": config.sigma_block, "beta": config.beta, "temperature": config.temperature,
            "device_model": devices.get(config.device_model).to_dict(), "seed": config.seed,
            "config": dataclasses.asdict(config),
        }
        images = torch.cat([x for x, _ in dataset.batches(split, 1000, device=device)])
        return cls(split, images, dataset.splits[split][1].to(device), metadata, _chips_differ(config))

    @property
    def kind(self) -> str:
        """The score that chooses the epoch: ``"noisy"`` (validation chips) or ``"clean"`` (the ideal layers)."""
        return "noisy" if self.noisy else "clean"

    def score(self, model: torch.nn.Module, dataset: data.ImageDataset, config: TrainConfig, device: torch.device,
              calibration: torch.Tensor | None) -> tuple[float, float]:
        """``(clean, noisy)`` accuracy (percent) of ``model`` on the split. Noisy: the mean over ``val_runs``
        chips, in fp32 whatever the machine (precision "auto" would read these few chips in both precisions to
        choose), not compiled (a compile per epoch costs more than it saves); the clean one where every chip is the
        clean network (``self.noisy`` False)."""
        clean = _accuracy(model, dataset, self.split, device)
        noisy = (chip_accuracy(model, self.images, self.labels, config, max(2, config.val_runs), calibration,
                               seed=config.seed, compile=False, precision="fp32")["mean"]
                 if self.noisy else clean)
        return clean, noisy

    def save_best(self, out: Path, model: torch.nn.Module, epoch: int, accuracy: float) -> None:
        """Write ``out/checkpoint.pt``: ``model``, the best so far at ``epoch`` with the selection ``accuracy``."""
        checkpoint.save(out / "checkpoint.pt", model,
                        {**self.metadata, "epoch": epoch, "val_accuracy": accuracy, "selected_on": self.split})
