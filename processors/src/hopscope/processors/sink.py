"""Sinks: the :class:`Sink` protocol, the Elasticsearch sink and an in-memory double.

A sink is set up once (:meth:`Sink.setup`), takes batches (:meth:`Sink.write` → a
:class:`WriteOutcome`: acknowledged count and rejected documents with reasons) and is closed
once. ``write`` raises :class:`SinkUnavailableError` when the whole batch must be retried
(the runtime pauses its partitions and retries with backoff, never dropping and never
committing past it) and :class:`SinkAccessError` when retrying cannot help. Document ids are
deterministic, so writing a batch twice overwrites, never duplicates.

The Elasticsearch sink: templates at start, bulk writes with every item checked.

A deletion (:func:`~hopscope.processors.documents.deletion`: a stale derived document of a
trace derived again) is a ``delete`` action in the same bulk request.

A bulk answer is sorted item by item:

- ``2xx`` (and ``409``, an already-present version; ``404`` for a deletion: already gone):
  acknowledged;
- ``429``, ``5xx``: retryable, the whole request's fate until Elasticsearch recovers;
- ``401``, ``403`` (credentials rejected, a privilege missing): :class:`SinkAccessError`, for
  the whole request; these are not the document's fault and must not fill the dead-letter topic;
- other ``4xx`` (a mapping rejection): the document goes to the dead-letter topic with the
  Elasticsearch error as the reason, and processing goes on.

Connection errors and retryable statuses raise :class:`SinkUnavailableError`; the runtime then
pauses its partitions and retries with backoff, never dropping and never committing past the
unacknowledged documents. Authentication, authorization and TLS failures raise
:class:`SinkAccessError` instead, at once: retrying cannot fix them, and the processor stops
with nothing committed past what Elasticsearch acknowledged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from hopscope.core.es_security import access_problem, unreachable_cause
from hopscope.core.settings import DEFAULT_INDEX_PREFIX
from hopscope.processors.documents import Document
from hopscope.processors.errors import SinkAccessError, SinkUnavailableError, SinkUnreachableError
from hopscope.processors.templates import KINDS, index_template, template_name

logger = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
# What of a bulk answer the sink reads: each item's status and error, in item order. Without
# the rest (index, id, version, shards...) the answer is ~10x smaller, which halves the
# client's CPU per write (parsing it cost ~10 µs per span).
BULK_ANSWER_FIELDS = "errors,items.*.status,items.*.error"
# Not the document's fault: the credentials or the privileges are wrong for every document.
ACCESS_DENIED = frozenset({401, 403})


@dataclass
class WriteOutcome:
    """What one write did: acknowledged count and rejected documents with reasons."""

    acknowledged: int = 0
    rejected: list[tuple[Document, str]] = field(default_factory=list)
    took_s: float = 0.0


BulkOutcome = WriteOutcome  # the name the Elasticsearch sink's callers know


class Sink(Protocol):
    """Where documents go. ``setup`` and ``write`` may raise :class:`SinkUnavailableError`
    (retried) or :class:`SinkAccessError` (fatal); ``close`` is idempotent."""

    def setup(self) -> None: ...

    def write(self, documents: Sequence[Document]) -> WriteOutcome: ...

    def close(self) -> None: ...


class ElasticsearchSink:
    """Bulk writer for one cluster. ``client`` is an ``elasticsearch.Elasticsearch``;
    ``url`` only names the cluster in error messages. ``owns_client``: :meth:`close` closes
    the client too (the sink built it, see :meth:`connect`)."""

    def __init__(
        self, client: Any, prefix: str = DEFAULT_INDEX_PREFIX, url: str | None = None,
        *, owns_client: bool = False,
    ) -> None:  # fmt: skip
        self.client = client
        self.prefix = prefix
        self.url = url
        self._owns_client = owns_client

    @classmethod
    def connect(cls, url: str, security: Any, prefix: str) -> ElasticsearchSink:
        """A sink with its own client for ``url`` (``security``: an
        :class:`~hopscope.core.es_security.EsSecurity`, None: from the environment)."""
        from hopscope.core.es_security import es_client

        client = es_client(url, security, request_timeout=60, serializers=answer_serializers())
        return cls(client, prefix, url, owns_client=True)

    def setup(self) -> None:
        """Install the index templates (:meth:`install_templates`)."""
        self.install_templates()

    def close(self) -> None:
        if self._owns_client:
            self._owns_client = False
            self.client.close()

    def install_templates(self) -> None:
        """Create or update the composable template of every record kind.

        One replica per shard when the cluster has more than one data node, so losing a node
        loses no acknowledged document and the shards stay writable; none on a single node.
        The count is read when the processor starts: indices created later follow the template
        as it was then.
        """
        from elasticsearch import ApiError, TransportError

        replicas = 1 if self._data_nodes() > 1 else 0
        for kind in KINDS:
            try:
                self.client.indices.put_index_template(
                    name=template_name(self.prefix, kind),
                    **index_template(self.prefix, kind, replicas),
                )
            except (ApiError, TransportError) as error:
                problem = access_problem(error, self.url)
                if problem is not None:
                    raise SinkAccessError(
                        f"could not install the {kind} index template: {problem}"
                    ) from None
                self._raise_if_unreachable(error)
                raise SinkUnavailableError(
                    f"could not install the {kind} index template: {error}"
                ) from None

    def _data_nodes(self) -> int:
        """Data nodes in the cluster; 1 when the health API is refused (a role without the
        ``monitor`` privilege) or unreachable (the template call then reports it)."""
        from elasticsearch import ApiError, TransportError

        try:
            health = self.client.cluster.health()
        except (ApiError, TransportError):
            return 1
        return int(health.get("number_of_data_nodes", 1))

    def _raise_if_unreachable(self, error: BaseException) -> None:
        """Raise :class:`SinkUnreachableError` when nothing answered, in a few words: the
        runtime logs it once per back-off step, and the client's nested repr is three
        exceptions deep."""
        cause = unreachable_cause(error)
        if cause is not None:
            where = f"Elasticsearch at {self.url}" if self.url else "Elasticsearch"
            raise SinkUnreachableError(f"{where} unreachable ({cause})") from None

    def write(self, documents: Sequence[Document]) -> WriteOutcome:
        """Index ``documents``; raise :class:`SinkUnavailableError` when it must be retried,
        :class:`SinkAccessError` when the credentials, a privilege or the CA is wrong."""
        from elastic_transport import TlsError
        from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, TransportError

        outcome = WriteOutcome()
        if not documents:
            return outcome
        started = time.perf_counter()
        try:
            # Lines, not one body: the client builds its buffer from them as it reads them.
            answer = self.client.options(request_timeout=60).bulk(
                operations=bulk_lines(documents), filter_path=BULK_ANSWER_FIELDS
            )
        except TlsError as error:
            raise SinkAccessError(f"bulk write: {access_problem(error, self.url)}") from None
        except (ConnectionError, ConnectionTimeout) as error:
            self._raise_if_unreachable(error)
            raise SinkUnavailableError(f"Elasticsearch unreachable: {error}") from None
        except ApiError as error:
            if error.status_code in ACCESS_DENIED:
                raise SinkAccessError(f"bulk write: {access_problem(error, self.url)}") from None
            if error.status_code in RETRYABLE:
                raise SinkUnavailableError(
                    f"Elasticsearch answered {error.status_code} to a bulk request"
                ) from None
            raise
        except TransportError as error:
            raise SinkUnavailableError(f"Elasticsearch transport error: {error}") from None
        outcome.took_s = time.perf_counter() - started
        items = answer["items"]
        if answer.get("errors") is False and len(items) == len(documents):
            # No item failed (a deletion's 404, already gone, is no failure): all acknowledged.
            outcome.acknowledged = len(documents)
            return outcome
        retryable = 0
        denied: list[str] = []
        for doc, item in zip(documents, items, strict=True):
            result = item.get("delete" if doc.delete else "index", {})
            status = int(result.get("status", 500))
            if status < 300 or status == 409 or (status == 404 and doc.delete):
                outcome.acknowledged += 1
            elif status in RETRYABLE:
                retryable += 1
            elif status in ACCESS_DENIED:
                denied.append(str(result.get("error", {}).get("reason", status)))
            else:
                reason = json.dumps(result.get("error", {"status": status}), sort_keys=True)
                outcome.rejected.append((doc, reason[:4000]))
        if denied:
            where = f"Elasticsearch at {self.url}" if self.url else "Elasticsearch"
            raise SinkAccessError(
                f"{where} denied {len(denied)} of {len(documents)} documents of a bulk write "
                f"({denied[0]}); the user or API key lacks a privilege on the {self.prefix}-* "
                f"indices: give it the processor role in docs/SECURITY.md"
            )
        if retryable:
            # Simplest safe rule: the caller retries the whole batch (ids are deterministic,
            # so the already-acknowledged part is overwritten, not duplicated).
            raise SinkUnavailableError(
                f"Elasticsearch refused {retryable} of {len(documents)} documents with a "
                f"retryable status (e.g. 429: write queue full)"
            )
        return outcome


def answer_serializers() -> dict[str, Any]:
    """The sink client's JSON serializer: answers parsed by orjson (a bulk answer carries one
    item a document: ~0.2 µs of the client's 0.4 a document), requests written as the client
    writes them."""
    from elasticsearch.serializer import JsonSerializer

    class OrjsonAnswers(JsonSerializer):
        def json_loads(self, data: bytes) -> Any:
            return orjson.loads(data)  # its JSONDecodeError is a ValueError, as json's

    return {JsonSerializer.mimetype: OrjsonAnswers()}


# The serializer switch: False writes with the standard library only (the benchmark's
# "before" run; a way out should orjson ever misbehave).
FAST_JSON = True


def _dumps(value: Any) -> bytes:
    """``value`` as compact JSON: orjson (7x the standard library's speed on our documents),
    the standard library for what orjson refuses (an integer past 64 bits)."""
    if FAST_JSON:
        try:
            return orjson.dumps(value)
        except TypeError:  # orjson.JSONEncodeError
            pass
    # As the client's own serializer does it (a lone surrogate passes, for the node to judge).
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def bulk_lines(documents: Sequence[Document]) -> Iterator[bytes]:
    """The lines of the ``_bulk`` request (NDJSON) that indexes ``documents``, made as they
    are read: one action line and one source line per document, without their newlines (a
    deletion has its action line alone).

    Serializing is a large share of the processor's CPU: the client's per-line ``json.dumps``
    costs ~20 µs per span of our documents, orjson ~3 (several times that when a request's
    thousands of lines are held and the allocator is not tuned, see :func:`_action`); a
    ``source`` the native core wrote costs nothing, an action line ~0.1 µs. The client joins
    the lines into its request buffer as it reads them, so the body is held once, not once
    more as lines.
    """
    for doc in documents:
        if doc.delete:
            yield _action("delete", doc.index, doc.id)
            continue
        yield _action("index", doc.index, doc.id)
        # A body the native core wrote is sent as it came (Document); its dict, never read,
        # is never made.
        yield doc.source if doc.source is not None else _dumps(doc.body)


def _action(verb: str, index: str, doc_id: str) -> bytes:
    """The action line of a document: formatted when its index and id need no escaping (no
    quote, backslash or control character: the deterministic ids and daily indices), else
    serialized.

    Not orjson for every line: it makes each result in a fresh 1 KiB buffer then shrinks it,
    which, with the thousands of lines a bulk request holds until the client joins them, costs
    ~0.2 µs a line with the processor's allocator settings (:func:`~hopscope.processors.runtime.
    tune_allocator`) and ~2 µs without them (glibc's defaults); formatting costs ~0.1 either way.

    >>> _action("index", "p-spans-2026.05.04", "t-1")
    b'{"index":{"_index":"p-spans-2026.05.04","_id":"t-1"}}'
    >>> _action("delete", "p", 'a"b')
    b'{"delete":{"_index":"p","_id":"a\\\\"b"}}'
    """
    if (
        index.isprintable() and doc_id.isprintable()
        and '"' not in index and '"' not in doc_id
        and "\\" not in index and "\\" not in doc_id
    ):  # fmt: skip
        return f'{{"{verb}":{{"_index":"{index}","_id":"{doc_id}"}}}}'.encode()
    return _dumps({verb: {"_index": index, "_id": doc_id}})


def bulk_body(documents: Sequence[Document]) -> bytes:
    """The whole ``_bulk`` request body of ``documents``, each line ending in a newline.

    >>> from hopscope.processors.documents import Document
    >>> body = bulk_body([Document("spans", "s-2026.05.04", "t-1", {"name": "pay", "n": 1})])
    >>> body.splitlines(keepends=True)
    [b'{"index":{"_index":"s-2026.05.04","_id":"t-1"}}\\n', b'{"name":"pay","n":1}\\n']
    """
    return b"".join(line + b"\n" for line in bulk_lines(documents))


class InMemorySink:
    """A :class:`Sink` double: documents kept by (index, id), last write wins, as in
    Elasticsearch; a deletion removes the document. For unit tests of the code around the sink.

    ``unavailable``: while true, every write raises :class:`SinkUnavailableError` (an outage);
    ``reject``: documents it returns a reason for are rejected (a mapping error);
    ``on_write``: called with each batch before it is taken (tests end an outage there).
    """

    def __init__(self, reject: Callable[[Document], str | None] | None = None) -> None:
        self.documents: dict[tuple[str, str], Document] = {}
        self.writes: list[list[Document]] = []
        self.attempts = 0
        self.unavailable = False
        self.reject = reject
        self.on_write: Callable[[Sequence[Document]], None] | None = None
        self.set_up = False
        self.closed = False

    def setup(self) -> None:
        self.set_up = True

    def write(self, documents: Sequence[Document]) -> WriteOutcome:
        self.attempts += 1
        if self.on_write is not None:
            self.on_write(documents)
        if self.unavailable:
            raise SinkUnavailableError("in-memory sink unavailable (test outage)")
        outcome = WriteOutcome()
        for document in documents:
            reason = self.reject(document) if self.reject else None
            if reason is None:
                if document.delete:
                    self.documents.pop((document.index, document.id), None)
                else:
                    self.documents[(document.index, document.id)] = document
                outcome.acknowledged += 1
            else:
                outcome.rejected.append((document, reason))
        self.writes.append(list(documents))
        return outcome

    def close(self) -> None:
        self.closed = True
