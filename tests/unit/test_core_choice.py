"""Which per-span core a process uses (:mod:`hopscope.processors.core`): HOPSCOPE_NATIVE=0
selects the Python one, the choice is said once in the log, and both give the same records."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator

import pytest

from hopscope.processors import core
from hopscope.processors.decode import decode_span_message, decode_span_message_reference
from tests.otlp_builders import otlp_spans

BUILT = importlib.util.find_spec("hopscope_native") is not None
START = 1_775_030_400_000_000_000


@pytest.fixture(autouse=True)
def fresh_choice() -> Iterator[None]:
    """Each test decides afresh; the process's own choice is restored afterwards."""
    saved = dict(core._chosen)
    core._chosen.clear()
    yield
    core._chosen.clear()
    core._chosen.update(saved)


def test_zero_selects_the_python_core(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(core.ENV, "0")
    assert core.native() is None and core.name() == "python"
    with caplog.at_level(logging.INFO, logger=core.__name__):
        core.log_choice()
    assert caplog.messages == ["per-span core: python (HOPSCOPE_NATIVE=0)"]


@pytest.mark.skipif(not BUILT, reason="hopscope_native is not built (make install builds it)")
def test_the_native_core_is_used_when_built(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(core.ENV, raising=False)
    assert core.name() == "native"
    with caplog.at_level(logging.INFO, logger=core.__name__):
        core.log_choice()
    assert caplog.messages[0].startswith("per-span core: native")
    span = {"span_id": b"\x01" * 8, "start": START, "end": START + 5, "name": "4111 1111 1111 1111"}
    payload = otlp_spans(bytes(range(1, 17)), [span])
    assert decode_span_message(payload) == decode_span_message_reference(payload)
    assert decode_span_message(payload).spans[0].name == "4111 11** **** 1111"


def test_select_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(core.ENV, "1")
    core.select("python")
    assert core.name() == "python"
    if BUILT:
        core.select("native")
        assert core.name() == "native"
    else:
        with pytest.raises(RuntimeError, match="not installed"):
            core.select("native")
