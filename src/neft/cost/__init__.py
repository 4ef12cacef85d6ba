"""What a chip costs (docs/method.md, 'What a chip costs'): energy, latency and area per inference, layer by layer,
and the seconds and joules of programming one chip and of each per-chip fix. May import: :mod:`neft.common`,
:mod:`neft.models`, :mod:`neft.chip`.

- :mod:`~neft.cost.technology`: the constants, each a named key with its unit and source, one node (45 nm);
- :mod:`~neft.cost.network`: what a network asks of the chip per inference (fan-in, outputs, reads, digital ops);
- :mod:`~neft.cost.inference`: one layer's energy, latency and area;
- :mod:`~neft.cost.programming`: programming, write-verify, BatchNorm recalibration and the tuned block per chip;
- :mod:`~neft.cost.table`: :class:`CostTable` and :func:`chip_cost`, the per-layer table with totals, JSON and CSV.
"""

from neft.cost.table import CostTable, chip_cost
from neft.cost.technology import KEYS, NODE, Technology, technology

__all__ = ["CostTable", "chip_cost", "Technology", "technology", "KEYS", "NODE"]
