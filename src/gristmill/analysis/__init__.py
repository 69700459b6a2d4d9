"""Column statistics of a finished dataset (``analysis.json``, ``DatasetResults.load_analysis()``)."""

from gristmill.analysis.stats import ColumnStats, DatasetAnalysis, analyze_files

__all__ = ["ColumnStats", "DatasetAnalysis", "analyze_files"]
