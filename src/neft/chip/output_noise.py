"""Output noise per read of the crossbar circuit's periphery (docs/method.md, 'The periphery'; aihwkit
``IOParameters.out_noise``): standard normal draws shaped like a tile's outputs, keyed by (chip seed, layer, tile,
block of :data:`~neft.chip.read_noise.READ_BLOCK` images, read attempt) through
:func:`neft.common.seeds.output_seed`, so that an image's noise depends neither on the batch size nor on chips per
pass, and each re-read of bound management has its own draw.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from neft.chip.read_noise import ReadNoise
from neft.common.seeds import output_seed

__all__ = ["OutputNoise"]


class OutputNoise:
    """The output-noise draws of one circuit: one :class:`~neft.chip.read_noise.ReadNoise` stream per read attempt,
    and ``generator`` for training forwards (None: torch's global generator)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self._streams: dict[int, ReadNoise] = {}
        self.generator = generator

    def __call__(self, layer: int, tile: int, attempt: int, reads: tuple[Sequence[int], int] | None,
                 like: torch.Tensor, chip_index: torch.Tensor | None, training: bool,
                 call: int = 0) -> torch.Tensor | None:
        """Standard normal noise shaped like one chip's outputs ``like`` ``[B, C, *positions]`` (or ``[..., C]``) of
        layer ``layer``'s tile ``tile`` on read ``attempt``: for ``reads = (chip seeds, first image)`` keyed per
        image block as read noise (:class:`~neft.chip.read_noise.ReadNoise`; ``chip_index`` under vmap); without
        reads, a fresh draw from the training generator when ``training`` (noise drawn per step), else None (clean
        forwards have no output noise); ``call``: the layer's call in the forward, as read noise."""
        if reads is None:
            if not training:
                return None
            return torch.randn(like.shape, generator=self.generator, dtype=like.dtype, device=like.device)
        if attempt not in self._streams:
            self._streams[attempt] = ReadNoise(functools.partial(_seed, attempt=attempt))
        chip_seeds, start = reads
        return self._streams[attempt](layer, tile, chip_seeds, start, like, chip_index, call)


def _seed(chip_seed: int, layer: int, tile: int, block: int, call: int, attempt: int) -> int:
    return output_seed(chip_seed, layer, tile, block, attempt, call)
