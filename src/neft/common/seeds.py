"""Every seed neft derives from a user's seed, in one place (docs/method.md, 'Noise timing').

Seeds are stable hashes (the first 8 bytes of SHA-256, as a non-negative 63-bit integer) of a key naming what
they seed, so a chip or a training step is replayed from its coordinates alone: independent of chunking, order,
process count and of whatever else ran before.
"""

from __future__ import annotations

import hashlib

__all__ = ["run_seed", "step_seed", "read_seed", "output_seed", "verify_seed", "fix_seed", "calibration_seed",
           "adc_seed"]


def _hashed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def run_seed(base_seed: int, sigma: float, run: int) -> int:
    """Seed of Monte Carlo run (programmed chip) ``run`` at relative device variation ``sigma``: depends only on
    (base seed, sigma rounded to 1e-9, run index), so any single chip can be replayed."""
    return _hashed(f"{int(base_seed)}:{round(float(sigma), 9):.9f}:{int(run)}")


def step_seed(seed: int, rank_index: int, step: int) -> int:
    """Seed of the training noise of data-parallel rank ``rank_index`` at optimiser step ``step``: ranks draw
    different chips, and a resumed run redraws exactly the chips of an uninterrupted one."""
    return _hashed(f"train:{int(seed)}:{int(rank_index)}:{int(step)}")


def read_seed(chip_seed: int, layer: int, tile: int, block: int, call: int = 0) -> int:
    """Seed of the read noise of the chip drawn from ``chip_seed`` (a :func:`run_seed`) in mapped layer ``layer``
    (its index in :attr:`neft.chip.crossbar.Crossbar.names`), tile ``tile``, for the block ``block`` of
    :data:`neft.chip.read_noise.READ_BLOCK` consecutive test images (image i is in block ``i // READ_BLOCK``), on
    the layer's call ``call`` of the forward (0; 1, 2, ... for a module called again): each image reads with its
    own noise, whatever the batch size and chips per pass (docs/method.md, 'Read noise')."""
    return _hashed(f"read:{int(chip_seed)}:{int(layer)}:{int(tile)}:{int(block)}{_call(call)}")


def _call(call: int) -> str:
    """The key suffix of a layer's call ``call``: none for the first (seeds as before calls were counted)."""
    return f":call{int(call)}" if call else ""


def output_seed(chip_seed: int, layer: int, tile: int, block: int, attempt: int, call: int = 0) -> int:
    """Seed of the output noise of the chip drawn from ``chip_seed`` in mapped layer ``layer``, tile ``tile``, for the
    block ``block`` of test images (as :func:`read_seed`, ``call`` too), on read ``attempt`` (0, then 1, 2, ... for
    the re-reads of bound management): every read of every image its own draw, whatever the batch size and chips
    per pass (docs/method.md, 'The periphery')."""
    return _hashed(f"out:{int(chip_seed)}:{int(layer)}:{int(tile)}:{int(block)}:{int(attempt)}{_call(call)}")


def verify_seed(base_seed: int) -> int:
    """Seed of the random write-verify selection (``verify_select="random"``) of an evaluation with base seed
    ``base_seed``: one selection per network, shared by every chip and sigma."""
    return _hashed(f"verify:{int(base_seed)}")


def fix_seed(chip_seed: int) -> int:
    """Seed of the per-chip fixes of the chip drawn from ``chip_seed`` (a :func:`run_seed`): the tuned block's
    training batches and its residual write noise (:mod:`neft.deployment.fixes`)."""
    return _hashed(f"fix:{int(chip_seed)}")


def calibration_seed(seed: int) -> int:
    """Seed of the shuffled draw of training images that calibrates the converter ranges (DAC, ADC) of a training
    run or an evaluation with seed ``seed`` (:func:`neft.chip.circuit.calibration_sample`; docs/method.md, 'The
    crossbar circuit'): the same images at every epoch and on every rank."""
    return _hashed(f"calibration:{int(seed)}")


def adc_seed(chip_seed: int, layer: int) -> int:
    """Seed of the converter errors (offset, gain, INL, SAR capacitor mismatch) of every ADC of mapped layer ``layer``
    on the chip drawn from ``chip_seed`` (a :func:`run_seed`; :func:`neft.chip.adc_circuit.draw`; docs/method.md,
    'Converter circuits'): fixed per chip, whatever the batch size and chips per pass."""
    return _hashed(f"adc:{int(chip_seed)}:{int(layer)}")
