"""Reports over results files: tables, plots and seed statistics (docs/results.md). May import everything below it:
:mod:`neft.common`, :mod:`neft.data`, :mod:`neft.models`, :mod:`neft.chip`, :mod:`neft.store`,
:mod:`neft.deployment`, :mod:`neft.evaluation`, :mod:`neft.training`.

Modules: :mod:`~neft.reporting.results` (loading and checking results files), :mod:`~neft.reporting.labels`
(the names results go by), :mod:`~neft.reporting.tables` (comparison rows, markdown and CSV),
:mod:`~neft.reporting.plots` (accuracy vs sigma, vs fraction write-verified), :mod:`~neft.reporting.chip_plots`
(the realistic chip's columns, labels and drift plot), :mod:`~neft.reporting.seeds` (statistics over training
seeds) and :mod:`~neft.reporting.report` (the report files)."""

from neft.reporting.labels import evaluated_chip, result_label
from neft.reporting.plots import plot, plot_write_verify, write_verify_curves
from neft.reporting.report import write_report
from neft.reporting.results import check_result, load_results, same_evaluation, training_sigma
from neft.reporting.seeds import findings, seed_comparison, seed_sections
from neft.reporting.tables import comparison_rows, markdown_table, write_csv

__all__ = ["load_results", "check_result", "same_evaluation", "training_sigma", "result_label", "evaluated_chip",
           "comparison_rows", "write_verify_curves", "plot_write_verify", "markdown_table", "write_csv", "plot",
           "write_report", "seed_comparison", "seed_sections", "findings"]
