"""The examples in the analysis modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "hopscope.analysis.schema",
    "hopscope.analysis.expr",
    "hopscope.analysis.findings",
    "hopscope.analysis.jobs",
    "hopscope.analysis.loaders._records",
    "hopscope.analysis.loaders.parquet",
    "hopscope.analysis.jobs.bottlenecks",
    "hopscope.analysis.jobs.tail",
    "hopscope.analysis.jobs.balance",
    "hopscope.analysis.jobs.database",
    "hopscope.analysis.jobs.cache",
    "hopscope.analysis.render._format",
    "hopscope.analysis.render._page",
    "hopscope.analyze_cli",
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
