"""How analysis results reach people and machines: the terminal, the HTML page and JSON.

- :mod:`~hopscope.analysis.render._format`: the format policy every output shares (durations
  in ms, shares in %, and the raw values JSON carries);
- :mod:`~hopscope.analysis.render._plots`: the plots, inline SVG;
- :mod:`~hopscope.analysis.render._page`: the self-contained HTML page;
- :mod:`~hopscope.analysis.render._terminal`: rich tables and the JSON documents.

Nothing here imports :mod:`hopscope.analysis.report` at run time (only for type hints), so jobs
may use the format policy and the report may render itself (``Report.__rich__``).
"""

from hopscope.analysis.render._format import (
    cell_formatter,
    describe,
    header,
    is_ns,
    is_share,
    label,
    ms,
    ms_number,
    percent,
    to_json,
)
from hopscope.analysis.render._page import render_html, render_plot, write_html
from hopscope.analysis.render._plots import PLOTS
from hopscope.analysis.render._terminal import (
    findings_table,
    job_json,
    job_renderable,
    print_job,
    print_report,
    report_json,
    report_renderable,
    table,
)

__all__ = [
    "PLOTS",
    "cell_formatter",
    "describe",
    "findings_table",
    "header",
    "is_ns",
    "is_share",
    "job_json",
    "job_renderable",
    "label",
    "ms",
    "ms_number",
    "percent",
    "print_job",
    "print_report",
    "render_html",
    "render_plot",
    "report_json",
    "report_renderable",
    "table",
    "to_json",
    "write_html",
]
