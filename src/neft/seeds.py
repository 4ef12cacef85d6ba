"""Every seed neft derives from a user's seed, in one place (docs/method.md, 'Noise timing').

Seeds are stable hashes (the first 8 bytes of SHA-256, as a non-negative 63-bit integer) of a key naming what
they seed, so a chip or a training step is replayed from its coordinates alone: independent of chunking, order,
process count and of whatever else ran before.
"""

from __future__ import annotations

import hashlib

__all__ = ["run_seed", "step_seed"]


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
