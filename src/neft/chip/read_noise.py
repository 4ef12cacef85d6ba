"""Read noise per read of the crossbar circuit (docs/method.md, 'The crossbar circuit'): standard normal draws shaped
like a tile's partial sums, one per read, keyed by (chip seed, layer, tile, block of ``READ_BLOCK`` images) through
:func:`neft.common.seeds.read_seed`, so that an image's noise depends neither on the batch size nor on chips per pass.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence

import torch

from neft.common.seeds import read_seed

__all__ = ["ReadNoise", "READ_BLOCK"]

READ_BLOCK = 16  # images per read-noise draw: image i's noise is row i % 16 of block i // 16's draw


class ReadNoise:
    """The read-noise draws of one circuit with read noise: its generator (made on the device of the first draw)
    and the draw itself, hidden from ``torch.compile``."""

    def __init__(self, seed: Callable[[int, int, int, int, int], int] = read_seed) -> None:
        """``seed(chip_seed, layer, tile, block, call)``: the seed of one block's draw
        (:func:`neft.common.seeds.read_seed`; the output noise of the periphery keys its draws by
        :func:`neft.common.seeds.output_seed`)."""
        self.generator: torch.Generator | None = None
        self.seed = seed

    def __call__(self, layer: int, tile: int, chip_seeds: Sequence[int], start: int, like: torch.Tensor,
                 chip_index: torch.Tensor | None, call: int = 0) -> torch.Tensor:
        """Standard normal noise shaped like one chip's partial sums ``like`` ``[B, C, *positions]`` (or ``[B, C]``)
        of layer ``layer`` and tile ``tile``, for chips ``chip_seeds`` on images numbered from ``start``; image
        ``start + b`` takes row ``(start + b) % READ_BLOCK`` of the draw of block ``(start + b) // READ_BLOCK``, drawn
        per read: output position by output position, the C columns of one read consecutive (so the noise lies in
        the channels-last order of the partial sums). ``chip_index``: the (batched) position of the chip in the
        pass under ``torch.func.vmap``; None: the first chip's noise. ``call``: the layer's call in the forward (a
        module called again reads again, with its own noise)."""
        draw = _eager_draw() if "torch._dynamo" in sys.modules else _draw  # nothing compiles without dynamo
        return draw(self, layer, tile, chip_seeds, start, like, chip_index, call)


@functools.cache
def _eager_draw():
    """:func:`_draw` hidden from ``torch.compile`` (it seeds a generator per block of reads), made at the first
    draw once ``torch._dynamo`` is loaded (``torch.compile`` loads it before it traces anything): without it
    nothing is compiled, and ``torch.compiler.disable`` would import it, about 2 CPU-seconds that an evaluation
    without ``torch.compile`` (every ``neft`` command on a CPU, every worker process) would pay otherwise."""
    return torch.compiler.disable(_draw)


def _draw(noise: ReadNoise, layer: int, tile: int, chip_seeds: Sequence[int], start: int, like: torch.Tensor,
          chip_index: torch.Tensor | None, call: int = 0) -> torch.Tensor:
    size = like.shape[0]
    shape = (*like.shape[2:], like.shape[1]) if like.dim() > 2 else tuple(like.shape[1:])  # per read: channels last
    device = like.device
    if noise.generator is None or noise.generator.device != device:
        noise.generator = torch.Generator(device=device)
    generator = noise.generator
    draws = torch.empty((len(chip_seeds), size, *shape), device=device)
    for chip, chip_seed in enumerate(chip_seeds):
        for block in range(start // READ_BLOCK, (start + size - 1) // READ_BLOCK + 1):
            generator.manual_seed(noise.seed(chip_seed, layer, tile, block, call))
            first, last = block * READ_BLOCK, (block + 1) * READ_BLOCK  # the images of the block
            if first >= start and last <= start + size:  # a whole block: drawn in place
                draws[chip, first - start : last - start].normal_(generator=generator)
            else:
                block_draw = torch.randn((READ_BLOCK, *shape), generator=generator, device=device)
                lo, hi = max(first, start), min(last, start + size)
                draws[chip, lo - start : hi - start] = block_draw[lo - first : hi - first]
    draws = draws.to(like.dtype)
    if like.dim() > 2:  # [K, B, *positions, C] as [K, B, C, *positions] (a channels-last view)
        draws = draws.movedim(-1, 2)
    return draws[0] if chip_index is None else draws[chip_index]
