"""The Elasticsearch sink: templates at start, bulk writes with every item checked.

A bulk answer is sorted item by item:

- ``2xx`` (and ``409``, an already-present version): acknowledged;
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hopscope.core.es_security import access_problem
from hopscope.processors.documents import Document
from hopscope.processors.errors import SinkAccessError, SinkUnavailableError
from hopscope.processors.templates import KINDS, index_template, template_name

logger = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
# Not the document's fault: the credentials or the privileges are wrong for every document.
ACCESS_DENIED = frozenset({401, 403})


@dataclass
class BulkOutcome:
    """What one bulk write did: acknowledged ids and rejected documents with reasons."""

    acknowledged: int = 0
    rejected: list[tuple[Document, str]] = field(default_factory=list)
    took_s: float = 0.0


class ElasticsearchSink:
    """Bulk writer for one cluster. ``client`` is an ``elasticsearch.Elasticsearch``;
    ``url`` only names the cluster in error messages."""

    def __init__(self, client: Any, prefix: str = "hopscope", url: str | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.url = url

    def install_templates(self) -> None:
        """Create or update the composable template of every record kind."""
        from elasticsearch import ApiError, TransportError

        for kind in KINDS:
            try:
                self.client.indices.put_index_template(
                    name=template_name(self.prefix, kind), **index_template(self.prefix, kind)
                )
            except (ApiError, TransportError) as error:
                problem = access_problem(error, self.url)
                if problem is not None:
                    raise SinkAccessError(
                        f"could not install the {kind} index template: {problem}"
                    ) from None
                raise SinkUnavailableError(
                    f"could not install the {kind} index template: {error}"
                ) from None

    def write(self, documents: Sequence[Document]) -> BulkOutcome:
        """Index ``documents``; raise :class:`SinkUnavailableError` when it must be retried,
        :class:`SinkAccessError` when the credentials, a privilege or the CA is wrong."""
        from elastic_transport import TlsError
        from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, TransportError

        outcome = BulkOutcome()
        if not documents:
            return outcome
        operations: list[dict[str, Any]] = []
        for doc in documents:
            operations.append({"index": {"_index": doc.index, "_id": doc.id}})
            operations.append(doc.body)
        started = time.perf_counter()
        try:
            answer = self.client.options(request_timeout=60).bulk(operations=operations)
        except TlsError as error:
            raise SinkAccessError(f"bulk write: {access_problem(error, self.url)}") from None
        except (ConnectionError, ConnectionTimeout) as error:
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
        retryable = 0
        denied: list[str] = []
        for doc, item in zip(documents, answer["items"], strict=True):
            result = item.get("index", {})
            status = int(result.get("status", 500))
            if status < 300 or status == 409:
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
