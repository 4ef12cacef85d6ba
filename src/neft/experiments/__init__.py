"""Experiments built from runs: preset grids and the demo (:mod:`~neft.experiments.grid`), the rcg authors' search
(:mod:`~neft.experiments.rcg_search`). May import everything up to :mod:`neft.runs`."""

from neft.experiments.grid import DEMO, cell_name, demo, load_preset, pooled_results, reproduce

__all__ = ["DEMO", "cell_name", "demo", "load_preset", "pooled_results", "reproduce"]
