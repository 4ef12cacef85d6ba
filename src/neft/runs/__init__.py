"""Run directories: evaluating a trained run and writing its result files (:mod:`~neft.runs.evaluate`), and
importing weights trained elsewhere as a run (:mod:`~neft.runs.importing`). May import everything up to
:mod:`neft.reporting`."""

from neft.runs.evaluate import (
    FIX_IMAGES,
    SENSITIVITY_IMAGES,
    UnfinishedRunWarning,
    check_outputs,
    evaluate_run,
    output_paths,
    sweep_names,
)
from neft.runs.importing import import_run

__all__ = ["evaluate_run", "import_run", "UnfinishedRunWarning", "output_paths", "sweep_names", "check_outputs",
           "SENSITIVITY_IMAGES", "FIX_IMAGES"]
