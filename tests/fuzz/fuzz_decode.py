"""Coverage-guided fuzzing of the decoder with atheris (libFuzzer for Python).

Each input is decoded as an ``otlp_spans`` and as an ``otlp_logs`` message; anything but a
:class:`~hopscope.processors.errors.DecodeError` escaping, or a record whose document cannot be
serialized, is a crash that libFuzzer reports with the input that caused it::

    python tests/fuzz/fuzz_decode.py -runs=100000 [corpus_dir ...]

``tests/unit/test_fuzz_atheris.py`` runs it briefly, seeded with valid messages.
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports(include=["hopscope"]):
    from hopscope.processors.decode import decode_logs, decode_span_message
    from hopscope.processors.documents import log_document, span_document
    from hopscope.processors.errors import DecodeError

RECEIVED = 1_775_030_460_000_000_000


def test_one_input(data: bytes) -> None:
    try:
        decoded = decode_span_message(data, received_ns=RECEIVED)
    except DecodeError:
        pass
    else:
        for span in decoded.spans:
            json.dumps(span_document(span, "fuzz").body)
    try:
        logs = decode_logs(data, received_ns=RECEIVED)
    except DecodeError:
        pass
    else:
        for log in logs:
            json.dumps(log_document(log, "fuzz").body)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
