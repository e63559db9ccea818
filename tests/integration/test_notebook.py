"""The analysis notebook runs top to bottom in a kernel of this environment.

Without ``HOPSCOPE_ES_URL`` the notebook simulates the demo's traffic in memory, so this test
needs no services; it checks that every cell ran, that the tables, findings and plots were
produced, and that the HTML report was written. Needs the ``dev`` extra (nbclient, nbformat,
ipykernel).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "bottleneck_analysis.ipynb"
# Per cell; the whole notebook takes ~15 s on one core (simulation and eight jobs).
CELL_TIMEOUT_S = 300
JOBS = ("bottlenecks", "hops", "failovers", "coordination", "tail", "balance", "db", "cache")


def _text(output: dict[str, object]) -> str:
    """What a person would read in one output: stream text, or the data's HTML and plain text."""
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    data = output.get("data", {})
    assert isinstance(data, dict)
    return str(data.get("text/html", "")) + str(data.get("text/plain", ""))


def test_the_notebook_runs_and_produces_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        pytest.fail("nbclient, nbformat and ipykernel are needed: pip install -e '.[dev]'")
    # The kernel inherits this environment: simulate (no Elasticsearch of a user's shell),
    # and write the HTML report into the test's directory.
    monkeypatch.delenv("HOPSCOPE_ES_URL", raising=False)
    report = tmp_path / "report.html"
    monkeypatch.setenv("HOPSCOPE_REPORT_HTML", str(report))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    # One cell of our own at the end: which Python ran the notebook.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    assert Path(notebook.cells[-1].outputs[0]["text"].strip()) == Path(sys.executable)
    outputs = [cell.outputs for cell in code_cells]
    assert all(cell.get("execution_count") for cell in code_cells)
    assert not any(o["output_type"] == "error" for cell in outputs for o in cell)
    # Every cell after the settings one shows something.
    assert all(cell_outputs for cell_outputs in outputs[1:]), [len(o) for o in outputs]
    text = "\n".join(_text(o) for cell in outputs for o in cell)

    assert "simulation node-failure, 400 payments" in text
    for job in JOBS:
        assert f"<td>&quot;{job}&quot;</td>" in text, job  # polars quotes strings
    # The findings, read out: the injected node failure comes first.
    findings = next(_text(o) for cell in outputs for o in cell if "recommendation:" in _text(o))
    assert findings.startswith("1. [high] payment-2 (payment) failed")
    assert "node_failure" in findings and "expected gain:" in findings
    for plot in ("critical_path", "hops", "failovers", "latency"):
        start = text.index(f'<figure class="plot" data-plot="{plot}">')
        assert '<rect class="mark"' in text[start : text.index("</figure>", start)], plot
    assert report.stat().st_size > 20_000
    assert f"wrote {report}" in text
