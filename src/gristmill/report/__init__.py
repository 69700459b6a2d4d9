"""The HTML report of a dataset or workflow directory: one self-contained file.

``build`` reads the directory and writes the page, ``profile`` turns columns into statistics
and chart data, ``charts`` draws inline SVG, ``page`` assembles escaped HTML, ``record`` shows
one record in a notebook. ``docs/report.md`` is the user guide.
"""

from gristmill.report.build import report_kind, write_dataset_report, write_workflow_report
from gristmill.report.record import SampleRecord, sample_record

__all__ = ["SampleRecord", "report_kind", "sample_record", "write_dataset_report", "write_workflow_report"]
