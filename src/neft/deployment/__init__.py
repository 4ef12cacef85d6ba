"""Fixes applied to one programmed chip before it is tested (docs/method.md, 'Selective write-verify', 'Fixes for
one programmed chip'). May import: :mod:`neft.common`, :mod:`neft.chip`.

- :mod:`~neft.deployment.write_verify`: which weights are write-verified (magnitude, random, SWIM);
- :mod:`~neft.deployment.recalibration`: BatchNorm statistics re-estimated on the chip;
- :mod:`~neft.deployment.tuned_block`: a tiny shared block tuned per chip;
- :mod:`~neft.deployment.fixes`: :class:`ChipFixes`, the fixed order in which the Monte Carlo engine applies them.
"""

from neft.deployment.fixes import ChipFixes

__all__ = ["ChipFixes"]
