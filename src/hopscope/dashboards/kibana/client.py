"""Import the saved objects into Kibana through its saved objects API.

``POST <kibana>[/s/<space>]/api/saved_objects/_import?overwrite=true`` with the NDJSON as the
multipart field ``file`` and the ``kbn-xsrf`` header Kibana requires of API writes. The standard
library is enough for one multipart request, so the import adds no dependency.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hopscope.dashboards.kibana.errors import (
    KibanaAuthError,
    KibanaImportError,
    KibanaResponseError,
    KibanaUnreachableError,
)


@dataclass(frozen=True)
class ImportedObject:
    """One object Kibana reports as imported."""

    type: str
    id: str
    title: str
    overwritten: bool


@dataclass(frozen=True)
class ImportResult:
    """What an import did: objects created and objects that replaced an existing one."""

    objects: list[ImportedObject] = field(default_factory=list)

    @property
    def created(self) -> list[ImportedObject]:
        return [o for o in self.objects if not o.overwritten]

    @property
    def overwritten(self) -> list[ImportedObject]:
        return [o for o in self.objects if o.overwritten]


def import_url(kibana_url: str, space: str | None = None) -> str:
    """The import endpoint of ``kibana_url`` (in ``space`` unless None or ``default``)."""
    base = kibana_url.rstrip("/")
    if space and space != "default":
        base += f"/s/{quote(space, safe='')}"
    return f"{base}/api/saved_objects/_import?overwrite=true"


def _auth_header(api_key: str | None, user: str | None, password: str | None) -> dict[str, str]:
    if api_key and user:
        raise ValueError("give either an API key or a user, not both")
    if api_key:
        return {"Authorization": f"ApiKey {api_key}"}
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    return {}


def _multipart(ndjson: str, filename: str) -> tuple[bytes, str]:
    boundary = f"hopscope-{uuid.uuid4().hex}"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/ndjson\r\n\r\n"
        ).encode()
        + ndjson.encode("utf-8")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _kibana_message(body: bytes) -> str:
    """Kibana's own words from an error body (``{"message": ...}``), else the raw text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        answer = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(answer, dict) and answer.get("message"):
        return str(answer["message"])
    return text[:500]


def _object_error(error: dict[str, Any]) -> str:
    what = f"{error.get('type')} {error.get('id')!r}"
    title = error.get("meta", {}).get("title") or error.get("title")
    if title:
        what += f" ({title})"
    detail = error.get("error", {})
    kind = detail.get("type", "unknown")
    if kind == "conflict":
        return f"{what}: version conflict with an existing object; it was not replaced"
    if kind == "ambiguous_conflict":
        return f"{what}: ambiguous conflict, several existing objects match"
    if kind == "missing_references":
        missing = ", ".join(
            f"{r.get('type')} {r.get('id')!r}" for r in detail.get("references", [])
        )
        return f"{what}: missing references {missing}"
    if kind == "unsupported_type":
        return f"{what}: this Kibana does not know the type (too old a Kibana, or a plugin is off)"
    return f"{what}: {detail.get('message') or kind}"


def import_saved_objects(
    kibana_url: str,
    ndjson: str,
    *,
    api_key: str | None = None,
    user: str | None = None,
    password: str | None = None,
    space: str | None = None,
    timeout_s: float = 60.0,
    filename: str = "hopscope.ndjson",
) -> ImportResult:
    """Import ``ndjson`` into Kibana, replacing objects with the same ids.

    Parameters:
        kibana_url: Kibana's base URL, e.g. ``http://127.0.0.1:5601``.
        ndjson: the export file's text (:func:`hopscope.dashboards.kibana.ndjson`).
        api_key: an encoded Kibana/Elasticsearch API key (``Authorization: ApiKey``).
        user, password: basic authentication instead of an API key.
        space: a Kibana space id; None for the default space.

    Raises:
        KibanaUnreachableError: no connection, or no answer within ``timeout_s``.
        KibanaAuthError: 401 or 403.
        KibanaResponseError: another error status, or a body that is not an import result.
        KibanaImportError: Kibana imported some objects and rejected others.
    """
    if not kibana_url.startswith(("http://", "https://")):
        raise ValueError(f"kibana_url must start with http:// or https://, got {kibana_url!r}")
    url = import_url(kibana_url, space)
    body, content_type = _multipart(ndjson, filename)
    headers = {"kbn-xsrf": "true", "Content-Type": content_type, "Accept": "application/json",
               **_auth_header(api_key, user, password)}  # fmt: skip
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as error:
        message = _kibana_message(error.read())
        if error.code in (401, 403):
            hint = (
                "check --api-key or --user/--password"
                if error.code == 401
                else "the user lacks the saved objects management privilege for this space"
            )
            raise KibanaAuthError(
                f"Kibana at {kibana_url} refused the import ({error.code}): {message}; {hint}"
            ) from None
        hint = " (is the space id right?)" if error.code == 404 else ""
        raise KibanaResponseError(
            f"Kibana answered {error.code} to POST {url}: {message}{hint}", status=error.code
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise KibanaUnreachableError(
            f"cannot reach Kibana at {kibana_url}: {reason}; is it running and ready "
            "(it takes a minute to start), and is the URL right?"
        ) from None
    try:
        answer = json.loads(raw)
        results = answer.get("successResults", [])
        errors = answer.get("errors", [])
        success = bool(answer["success"])
    except (ValueError, KeyError, AttributeError):
        raise KibanaResponseError(
            f"Kibana's answer to POST {url} is not an import result: {raw[:300]!r}"
        ) from None
    imported = ImportResult([
        ImportedObject(str(r.get("type")), str(r.get("destinationId") or r.get("id")),
                       str(r.get("meta", {}).get("title", "")), bool(r.get("overwrite")))
        for r in results
    ])  # fmt: skip
    if not success or errors:
        lines = "; ".join(_object_error(e) for e in errors) or "no details given"
        raise KibanaImportError(
            f"Kibana imported {len(imported.objects)} objects and rejected {len(errors)}: {lines}",
            errors=list(errors),
        )
    return imported
