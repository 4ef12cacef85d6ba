"""BatchNorm recalibration on one programmed chip (docs/method.md, 'Fixes for one programmed chip').

BatchNorm runs in the digital periphery, so its running statistics can be re-estimated after the chip is
programmed: forward N training images through the chip (its perturbed crossbar weights) with every BatchNorm
layer computing batch statistics, and deploy the resulting mean and variance. This is the cheapest per-chip fix and
the usual baseline for per-chip tuning (e.g. the "BN calibration" baselines of TSB, Qin et al., arXiv 2406.06544).

The statistics are PyTorch's cumulative average over the batches (``momentum=None``): over one batch they are
exactly the batch mean and the unbiased batch variance of the N images. The model itself is never modified: the
new statistics are fresh tensors passed to ``functional_call`` and returned.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["batchnorm_layers", "recalibrate_bn"]


def batchnorm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """``{module name: layer}`` of every BatchNorm layer of ``model`` that keeps running statistics."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats}


@contextmanager
def _batch_statistics(layers: Mapping[str, nn.Module]) -> Iterator[None]:
    """Inside the block the BatchNorm ``layers`` normalise with batch statistics and average them cumulatively
    (train mode, ``momentum=None``); their flags and momenta are given back afterwards."""
    saved = [(layer, layer.training, layer.momentum) for layer in layers.values()]
    for layer in layers.values():
        layer.train()
        layer.momentum = None
    try:
        yield
    finally:
        for layer, training, momentum in saved:
            layer.training, layer.momentum = training, momentum


def recalibrate_bn(model: nn.Module, weights: Mapping[str, torch.Tensor], images: torch.Tensor,
                   batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """The BatchNorm running statistics of ``model`` re-estimated with the chip's ``weights`` on ``images``.

    Args:
        model: the network (eval mode outside the BatchNorm layers, which this function switches temporarily).
        weights: the chip's perturbed crossbar weights ``{name: w + dW}`` (and any other parameter or buffer the
            chip's forward needs, e.g. a tuned block's weight).
        images: N training images ``[N, ...]`` on the model's device (no augmentation), N >= 1.
        batch_size: images per forward; the statistics are averaged over the batches (exact for one batch).

    Returns:
        ``{"<layer>.running_mean", "<layer>.running_var", "<layer>.num_batches_tracked"}`` for every BatchNorm layer
        (``running_var`` unbiased, as PyTorch keeps it); pass them with the weights to ``functional_call``.
        Empty for a model without BatchNorm.

    Raises:
        ValueError: for an empty ``images``.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return {}
    if not len(images):
        raise ValueError("BatchNorm recalibration needs at least one training image")
    fresh = {}
    for name, layer in layers.items():
        fresh[f"{name}.running_mean"] = torch.zeros_like(layer.running_mean)
        fresh[f"{name}.running_var"] = torch.ones_like(layer.running_var)
        fresh[f"{name}.num_batches_tracked"] = torch.zeros_like(layer.num_batches_tracked)
    with torch.no_grad(), _batch_statistics(layers):  # the layers update the fresh tensors in place
        for start in range(0, len(images), batch_size):
            functional_call(model, {**weights, **fresh}, (images[start:start + batch_size],))
    return fresh
