"""The examples in the docstrings of the analysis, settings and link modules run and give what
they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "hopscope.analysis.schema",
    "hopscope.analysis.expr",
    "hopscope.analysis.stats",
    "hopscope.analysis.findings",
    "hopscope.analysis.ids",
    "hopscope.analysis.jobs",
    "hopscope.analysis.loaders._records",
    "hopscope.analysis.loaders.parquet",
    "hopscope.analysis.loaders.files",
    "hopscope.analysis.loaders.partials",
    "hopscope.analysis.aggregates",
    "hopscope.analysis.jobs.bottlenecks",
    "hopscope.analysis.jobs.tail",
    "hopscope.analysis.jobs.balance",
    "hopscope.analysis.jobs.database",
    "hopscope.analysis.jobs.cache",
    "hopscope.analysis.jobs.compare",
    "hopscope.analysis.render._format",
    "hopscope.analysis.render._page",
    "hopscope.cli.analyze",
    # Beyond the analysis: the settings readers and the Kibana links.
    "hopscope.core.env",
    "hopscope.processors.settings",
    "hopscope.processors.foreign",
    "hopscope.processors.core",
    "hopscope.processors.derive._common",
    "hopscope.dashboards.kibana.links",
    # The Maven command line of the local stack.
    "hopscope.stack.artifacts",
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
