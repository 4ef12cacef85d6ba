"""Experiments built from runs: presets (:mod:`~neft.experiments.presets`), the cells of their grids
(:mod:`~neft.experiments.cells`), running a grid (:mod:`~neft.experiments.grid`), the demo
(:mod:`~neft.experiments.demo_grid`), the rcg authors' search (:mod:`~neft.experiments.rcg_search`). May import
everything up to :mod:`neft.runs`."""

from neft.experiments.cells import cell_name
from neft.experiments.demo_grid import DEMO, demo
from neft.experiments.grid import pooled_results, reproduce
from neft.experiments.presets import load_preset

__all__ = ["DEMO", "cell_name", "demo", "load_preset", "pooled_results", "reproduce"]
