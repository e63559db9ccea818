"""``hopscope.ingest`` exports its names lazily: each resolves to its home module, and the
stream processors start without loading the SDK's instrumentation."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import hopscope.ingest as ingest


@pytest.mark.parametrize("name", ingest.__all__)
def test_every_exported_name_resolves_to_its_home(name: str) -> None:
    value = getattr(ingest, name)
    home = "conventions" if name == "conventions" else ingest._HOMES[name]
    module = importlib.import_module(f"hopscope.ingest.{home}")
    assert value is (module if name == "conventions" else getattr(module, name))


def test_exports_and_homes_name_the_same_things() -> None:
    assert sorted(ingest.__all__) == sorted(["conventions", *ingest._HOMES])
    assert set(dir(ingest)) >= set(ingest.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'configur'"):
        ingest.configur  # noqa: B018 - the lookup is the test


def test_a_processor_starts_without_the_sdks_instrumentation() -> None:
    # A fresh interpreter: this one already imported the SDK for other tests.
    probe = (
        "import sys, hopscope.processors.runtime, hopscope.cli;"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.instrumentation',"
        " 'hopscope.ingest.telemetry', 'hopscope.ingest.pipeline'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
