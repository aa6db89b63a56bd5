"""OpenAPI 3.1 document built from the route table and the msgspec types, so it cannot drift."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from viewer_server import __version__
from viewer_server.api import ApiError, Route

_REF = "#/components/schemas/{name}"
_ERROR_TEXT = {
    400: "Bad request",
    401: "No valid token (Authorization: Bearer <token>)",
    403: "The role may not do this (docs/PERMISSIONS.md)",
    404: "Not found",
    409: "Conflict: stale revision, or the id exists",
    413: "Batch or body too large",
    415: "The body's Content-Type is not one this route takes",
    429: "Rate limited",
    503: "Needs a server with a data dir",
}


def _is_type(value: Any) -> bool:
    return value is not None and not isinstance(value, dict)


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    routes = list(routes)
    types = [ApiError]
    for r in routes:
        types += [t for t in (r.response, r.body) if _is_type(t)]
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of = dict(zip(map(id, types), refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        if r.response is None:
            ok: dict[str, Any] = {"description": "Switching Protocols (WebSocket)"}
        else:
            schema = schema_of[id(r.response)] if _is_type(r.response) else r.response
            ok = {"description": r.summary, "content": {r.media_type: {"schema": schema}}}
        responses: dict[str, Any] = {str(r.ok_status): ok}
        for code in r.errors:
            responses[str(code)] = {
                "description": _ERROR_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": schema_of[id(ApiError)]}},
            }
        op: dict[str, Any] = {
            "operationId": r.handler.__name__ if r.path != "/ws" else "websocket_default",
            "summary": r.summary,
            "responses": responses,
        }
        if r.params:
            op["parameters"] = [
                {
                    "name": prm.name,
                    "in": prm.where,
                    "required": prm.where == "path",
                    "schema": prm.schema,
                    "description": prm.description,
                }
                for prm in r.params
            ]
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema_of[id(r.body)]}}}
        elif r.raw_body:
            binary = {"schema": {"type": "string", "format": "binary"}}
            op["requestBody"] = {"required": True, "content": {t: binary for t in r.raw_body}}
        if r.body_types:
            responses["415"] = {
                "description": _ERROR_TEXT[415],
                "content": {"application/json": {"schema": schema_of[id(ApiError)]}},
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TwinView server",
            "version": __version__,
            "description": "REST API of a TwinView server. The live protocol runs over the WebSocket "
            "endpoints; see docs/PROTOCOL.md and /api/protocol.schema.json.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
