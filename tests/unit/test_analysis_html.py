"""The HTML report: structure, plots, findings order, formatting and escaping.

The report is the real one: every job run over a simulated node-failure window, so the page is
tested on the frames the jobs produce. Span names and resources are user input, so the
simulated telemetry is given markup in one span name and one lock resource on the way in.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from hopscope.analysis.findings import Finding, JobResult, rank
from hopscope.analysis.render import PLOTS, ms, render_html, render_plot, write_html
from hopscope.analysis.report import Report, build_report
from hopscope.dashboards.kibana import trace_link
from tests.analysis_support import simulated

EVIL = "<script>alert('x')</script>"
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"


def report_from_simulation(scenario: str = "node-failure", traces: int = 300) -> Report:
    """Every job over one simulator run, with markup in a span name and a lock resource."""
    data = simulated(scenario, traces=traces).dataset
    data = dataclasses.replace(
        data,
        hops=data.hops.with_columns(
            operation=pl.when(pl.col("operation") == "risk/Score")
            .then(pl.lit(f"risk/Score {EVIL}"))
            .otherwise(pl.col("operation"))
        ),
        coordination=data.coordination.with_columns(
            resource=pl.when(pl.col("coordination_kind") == "consensus.append")
            .then(pl.lit(f"clearing-log {EVIL}"))
            .otherwise(pl.col("resource"))
        ),
    )
    report = build_report(data, source=f"simulation {scenario}", progress=False)
    # A third impact level, and markup in every text field of a finding.
    evil = Finding(
        job="coordination",
        kind="lock_contention",
        title=f"lock {EVIL} held across the bank call",
        impact="low",
        gain_ns=1_000_000,
        subject={"resource": EVIL},
        evidence={
            "resource": EVIL,
            "critical_share": 0.4,
            "wait_p99_ns": 12_500_000,
            "exclusive_ns_mean": 3_250_000.0,
            "error_rate": 0.0125,
            "nodes": ["ledger-1", "ledger-2"],
            "resources": [{"resource": "r1", "total_ns": 2_000_000}, {"resource": "r2"}],
            "shares": {"p50": 0.5, "p99": 0.25},
        },
        recommendation=f"Release {EVIL} before calling out.",
        gain="shorter waits",
        example_traces=[EVIL],
    )
    return dataclasses.replace(report, findings=rank([*report.findings, evil]))


# --- a small parser: what the browser would see ------------------------------------------------


class _Page(HTMLParser):
    """Collects figures, their marks, finding titles, table names and any script or link."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, int | bool]] = {}
        self.current: str | None = None
        self.finding_titles: list[str] = []
        self.tables: list[str] = []
        self.external: list[str] = []
        self.scripts = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure" and "plot" in (a.get("class") or ""):
            self.current = a["data-plot"]
            self.figures[self.current] = {"svg": 0, "marks": 0, "empty": "data-empty" in a}
        elif tag == "svg" and self.current:
            self.figures[self.current]["svg"] = int(self.figures[self.current]["svg"]) + 1
        elif tag == "rect" and self.current and "mark" in (a.get("class") or ""):
            self.figures[self.current]["marks"] = int(self.figures[self.current]["marks"]) + 1
        elif tag == "span" and a.get("class") == "finding-title":
            self._in_title = True
        elif tag == "table":
            self.tables.append(a.get("data-table") or "")
        elif tag == "script":
            self.scripts += 1
        for name in ("src", "href"):
            value = a.get(name)
            if value and not value.startswith("#"):
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.current = None
        elif tag == "span":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.finding_titles.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def report() -> Report:
    return report_from_simulation()


@pytest.fixture(scope="module")
def page(report: Report) -> str:
    return render_html(report, title="node failure <demo>")


# --- tests -------------------------------------------------------------------------------------


def test_every_plot_is_drawn_from_the_job_tables(page: str) -> None:
    parsed = _parse(page)
    assert list(parsed.figures) == list(PLOTS)
    for name, figure in parsed.figures.items():
        assert not figure["empty"], name
        assert figure["svg"] >= 1, name
        assert int(figure["marks"]) >= 2, (name, figure)
    # The coordination plot has its by-kind and its top-resources panels.
    assert parsed.figures["coordination"]["svg"] == 2


def test_every_hop_of_the_plot_has_a_bar(report: Report) -> None:
    # The slowest edges often call a callee that is not traced (the issuer): no network or
    # server figure, but the client's p99 is still a bar.
    svg = render_plot(report, "hops")
    labels = re.findall(r'<text class="row-label"[^>]*><title>([^<]*)</title>', svg)
    tips = re.findall(r'<rect class="mark"[^>]*><title>([^<]*)</title>', svg)
    edges = report.results["hops"].tables["edges"]
    untraced = edges.filter(pl.col("server_p99_ns").is_null()).height
    assert labels and untraced, "the simulation has edges to an untraced callee"
    for label in labels:
        assert any(tip.startswith(f"{label}: ") for tip in tips), label


def test_plot_labels_are_whole(page: str) -> None:
    # The gutter grows with the labels: "clearing → bank-adapter bank-adapter/Authorize" is
    # not cut to fit a fixed width.
    shown = re.findall(r'<text class="row-label"[^>]*><title>([^<]*)</title>([^<]*)</text>', page)
    assert shown and all(full == visible for full, visible in shown)


def test_the_page_is_self_contained(page: str) -> None:
    parsed = _parse(page)
    assert parsed.external == []
    assert parsed.scripts == 0
    assert "@import" not in page and "url(" not in page
    assert len(page.encode()) < 400_000


def test_findings_appear_in_rank_order_with_their_parts(report: Report, page: str) -> None:
    parsed = _parse(page)
    assert [f.impact for f in report.findings] == ["high", "medium", "medium", "low"]
    assert [f.kind for f in report.findings] == [
        "node_failure",
        "critical_operation",
        # The failed node again, from 4 failed payments of 33: no count gate drops it.
        "tail_attribute",
        "lock_contention",
    ]
    assert parsed.finding_titles == [f.title for f in report.findings]
    section = page[page.index('id="findings"') : page.index('id="plots"')]
    assert (
        section.index("impact-high") < section.index("impact-medium") < section.index("impact-low")
    )
    for finding in report.findings:
        assert escape(finding.recommendation) in section
        assert escape(finding.gain) in section
        assert f"(≈ {ms(finding.gain_ns)} at p99)" in section
        for trace_id in finding.example_traces:
            assert f"<code>{escape(trace_id)}</code>" in section
    # Evidence: keys as words, ns (suffix or inner word) in ms, shares and rates in percent,
    # lists joined.
    assert "<dt>wait p99</dt><dd>12 ms</dd>" in section
    assert "<dt>exclusive mean</dt><dd>3.25 ms</dd>" in section
    assert "<dt>critical share</dt><dd>40%</dd>" in section
    assert "<dt>error rate</dt><dd>1.2%</dd>" in section
    assert "<dt>nodes</dt><dd>ledger-1, ledger-2</dd>" in section
    assert "<dt>resources</dt><dd>resource: r1, total: 2.00 ms; resource: r2</dd>" in section
    assert "<dt>shares</dt><dd>p50: 50%, p99: 25%</dd>" in section


def test_telemetry_text_is_escaped_everywhere(page: str) -> None:
    assert "<script" not in page
    # The finding (title, evidence, recommendation, trace), hop and coordination plots, tables.
    assert page.count(ESCAPED) >= 8
    plots = page[page.index('id="plots"') : page.index('id="tables"')]
    assert f"risk/Score {ESCAPED}" in plots
    assert f"clearing-log {ESCAPED}" in plots
    tables = page[page.index('id="tables"') :]
    assert f"<td>risk/Score {ESCAPED}</td>" in tables
    assert "<title>node failure &lt;demo&gt;</title>" in page


def test_every_job_table_is_rendered_with_units(report: Report, page: str) -> None:
    parsed = _parse(page)
    expected = [
        f"{job}.{name}"
        for job, result in report.results.items()
        for name, frame in result.tables.items()
        if not frame.is_empty()
    ]
    assert len(expected) > 15
    assert parsed.tables == expected
    edges = report.results["hops"].tables["edges"]
    top = edges.row(0, named=True)
    table = page[page.index('data-table="hops.edges"') :]
    table = table[: table.index("</table>")]
    assert "<th class=num>client p99 (ms)</th>" in table
    assert "<th class=num>error rate</th>" in table
    client_p99 = top["client_p99_ns"] / 1e6
    # The format policy: whole milliseconds from 10 ms, two decimals below.
    shown = f"{client_p99:.0f}" if client_p99 >= 10 else f"{client_p99:.2f}"
    assert f"<td class=num>{shown}</td>" in table
    assert f"<td class=num>{top['calls']:,}</td>" in table
    # Shares in percent, datetimes to the millisecond.
    by_service = page[page.index('data-table="bottlenecks.by_service"') :]
    cells = re.findall(r"<td class=num>([^<]*)</td>", by_service[: by_service.index("</table>")])
    assert cells and all(re.fullmatch(r"\d+(\.\d)?%", c) for c in cells), cells
    assert re.search(r"<td>2026-03-02 10:00:\d\d\.\d{3}</td>", page)


def test_long_tables_show_the_first_rows(report: Report) -> None:
    page = render_html(report, max_rows=3)
    resources = report.results["coordination"].tables["by_resource"]
    assert resources.height > 3
    assert f"coordination.by_resource: {resources.height:,} rows, first 3 shown" in page
    table = page[page.index('data-table="coordination.by_resource"') :]
    assert table[: table.index("</table>")].count("<tr>") == 1 + 3


def test_the_header_names_source_window_and_counts(report: Report, page: str) -> None:
    header = page[page.index("<header>") : page.index("</header>")]
    assert "simulation node-failure" in header
    assert "2026-03-02 10:00:00.000 – 2026-03-02 10:00:0" in header
    assert f"<b>{report.counts['spans']:,}</b> spans" in header


def test_latency_plot_marks_the_percentiles(report: Report, page: str) -> None:
    figure = page[page.index('data-plot="latency"') :]
    figure = figure[: figure.index("</figure>")]
    for p in ("p50", "p95", "p99"):
        assert f">{p} " in figure
    # Every trace lands in one bin. A bin's ok and failed bars share one tooltip.
    bins = set(re.findall(r"<title>([^<]*ms: \d+ ok, \d+ failed)</title>", figure))
    assert len(bins) > 5
    counts = [re.findall(r"(\d+) ok, (\d+) failed", tip)[0] for tip in bins]
    assert sum(int(ok) + int(failed) for ok, failed in counts) == report.latency.height


def test_missing_and_empty_tables_still_render(report: Report) -> None:
    partial = Report(
        source="file trace.json",
        window=None,
        counts={},
        latency=pl.DataFrame(),
        results={
            "hops": JobResult("hops", {"edges": report.results["hops"].tables["edges"].head(0)}),
            "coordination": JobResult(
                "coordination", {"by_kind": pl.DataFrame({"coordination_kind": ["lock_wait"]})}
            ),
            "tail": JobResult("tail", {"slow": pl.DataFrame()}),
            "cache": JobResult("cache"),
        },
    )
    parsed = _parse(render_html(partial))
    assert list(parsed.figures) == list(PLOTS)
    assert all(figure["empty"] and not figure["svg"] for figure in parsed.figures.values())
    page = render_html(partial)
    assert "No findings" in page
    assert "The hop edges table is empty for this window." in page
    assert "The coordination table lacks columns p99_ns." in page
    assert "tail.slow: empty." in page
    assert '<section class="job" id="job-cache"><h3>cache</h3><p class="note">No tables.' in page


def test_degenerate_values_do_not_break_the_svg(report: Report) -> None:
    """Nulls, NaN, a single trace and a single bucket: no NaN coordinates, no exception."""
    by_service = pl.DataFrame(
        {
            "service": ["a", "a"],
            "percentile": ["p50", "p99"],
            "share": [None, float("nan")],
            "self_share": [None, 0.5],
            "network_share": [float("nan"), 0.25],
            "coordination_share": [0.1, None],
        }
    )
    when = report.latency["time"][0]
    one = Report(
        source="s",
        window=(when, when + timedelta(seconds=1)),
        counts={"traces": 1},
        latency=pl.DataFrame(
            {"trace_id": ["t"], "time": [when], "duration_ns": [5_000_000], "error": [None]}
        ),
        results={
            "bottlenecks": JobResult("bottlenecks", {"by_service": by_service}),
            "failovers": JobResult(
                "failovers",
                {
                    "timeline": pl.DataFrame(
                        {"bucket": [when], "from_node": [None], "failovers": [2]}
                    )
                },
            ),
        },
    )
    page = render_html(one)
    parsed = _parse(page)
    for name in ("latency", "critical_path", "failovers"):
        assert parsed.figures[name]["marks"], name
    assert not re.search(r'="[^"]*(nan|inf)', page, re.IGNORECASE)


def test_write_html_creates_the_file(report: Report, tmp_path: Path) -> None:
    written = write_html(report, tmp_path / "out" / "report.html")
    assert written == tmp_path / "out" / "report.html"
    assert written.read_text(encoding="utf-8") == render_html(report)


def test_render_plot_is_the_figure_of_the_page(report: Report, page: str) -> None:
    for name in PLOTS:
        figure = render_plot(report, name)
        assert figure.startswith(f'<figure class="plot" data-plot="{name}">')
        assert figure in page
    with pytest.raises(ValueError, match="unknown plot 'pie'"):
        render_plot(report, "pie")


def test_max_rows_is_validated(report: Report) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        render_html(report, max_rows=-1)


def test_example_traces_link_to_kibana_discover_when_a_kibana_url_is_given(
    report: Report,
) -> None:
    link = trace_link("http://kibana.example:5601", index_prefix="hx")
    linked = dataclasses.replace(report, trace_link=link)
    finding = next(f for f in linked.findings if f.example_traces)
    trace_id = finding.example_traces[0]
    page = render_html(linked)
    url = linked.trace_url(trace_id)
    assert url is not None and url.startswith("http://kibana.example:5601/app/discover#/")
    assert trace_id in url and "hx" in url
    assert f'<a href="{escape(url)}"><code>{trace_id}</code></a>' in page
    as_json = linked.to_dict()["findings"]
    assert url in next(f["example_trace_urls"] for f in as_json if f["example_traces"])
    # Without a Kibana URL, plain ids and no links.
    assert report.trace_url(trace_id) is None
    assert 'href="http' not in render_html(report)


def test_terminal_output_keeps_bracketed_operation_names(report: Report) -> None:
    from rich.console import Console

    from hopscope.analysis.render import print_job, print_report

    console = Console(record=True, width=400)
    print_report(report, console)
    print_job(report.results["bottlenecks"], console)
    text = console.export_text()
    # "[service] operation" keys survive (rich would read "[payment]" as a markup tag).
    operations = report.results["bottlenecks"].tables["operations"]
    assert operations.height and operations["operation"][0] in text
    assert report.findings[0].title in text


def test_a_report_renders_itself_in_rich(report: Report) -> None:
    from rich.console import Console

    console = Console(record=True, width=400)
    console.print(report)  # Report.__rich__
    text = console.export_text()
    assert text.startswith("hopscope report")
    assert report.findings[0].title in text


def test_terminal_and_page_format_figures_by_one_rule(report: Report) -> None:
    from rich.console import Console

    from hopscope.analysis.render import table

    edges = report.results["hops"].tables["edges"].head(1)
    console = Console(record=True, width=1000)
    console.print(table("edges", edges))
    text = console.export_text()
    page = render_html(report)
    row = edges.row(0, named=True)
    p99, share = ms(row["network_p99_ns"]).removesuffix(" ms"), row["error_rate"]
    # The same millisecond number and percentage in both outputs, and the unit in the header.
    assert "network p99 (ms)" in " ".join(text.split()) and "network p99 (ms)" in page
    assert p99 in text and f"<td class=num>{p99}</td>" in page
    assert (f"{share * 100:.1f}%" if share < 0.1 else f"{share * 100:.0f}%") in text
