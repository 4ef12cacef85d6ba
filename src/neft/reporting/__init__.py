"""Reports over results files: tables, plots and seed statistics (docs/results.md). May import everything below it:
:mod:`neft.common`, :mod:`neft.data`, :mod:`neft.models`, :mod:`neft.chip`, :mod:`neft.store`,
:mod:`neft.deployment`, :mod:`neft.evaluation`, :mod:`neft.training`."""

from neft.reporting.report import (
                                   check_result,
                                   comparison_rows,
                                   findings,
                                   load_results,
                                   markdown_table,
                                   plot,
                                   result_label,
                                   seed_comparison,
                                   write_csv,
                                   write_report,
)

__all__ = ["check_result", "comparison_rows", "findings", "load_results", "markdown_table", "plot", "result_label",
           "seed_comparison", "write_csv", "write_report"]
