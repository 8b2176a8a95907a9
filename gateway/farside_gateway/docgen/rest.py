"""The REST API pages: from the OpenAPI document of the app (no server started)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from farside_protocol import errors, models
from farside_protocol.models import EventBatch, LogPage

from ..config import GatewayConfig, SiteConfig
from .markdown import COMMAND, banner, rst_to_md, table

# ---------------------------------------------------------------- REST API


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document the gateway serves at ``/openapi.json``."""
    from ..app import create_app
    from ..runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="farside-docgen-") as tmp:
        site = SiteConfig(name="local", memory="1 GiB")
        config = GatewayConfig(state_dir=Path(tmp), sites=[site])
        runtime = Runtime(config, "http://127.0.0.1:0")
        try:
            spec: dict[str, Any] = create_app(runtime).openapi()
        finally:
            runtime.db.close()
    return spec


def openapi_json(spec: dict[str, Any]) -> str:
    marked = {"x-generated": f"by `{COMMAND}`; do not edit by hand", **spec}
    return json.dumps(marked, indent=2, ensure_ascii=False) + "\n"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _link(name: str) -> str:
    return f"[{name}](#{name.lower()})"


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return _link(_ref_name(schema["$ref"]))
    if "anyOf" in schema:
        parts = [s for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = len(parts) < len(schema["anyOf"])
        text = " or ".join(_schema_text(s) for s in parts)
        return text + (" or null" if nullable else "")
    kind = schema.get("type")
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if kind == "array":
        return f"array of {_schema_text(schema.get('items', {}))}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"object of {_schema_text(extra)}" if isinstance(extra, dict) else "object"
    text = str(kind or "any")
    if schema.get("format"):
        text += f" ({schema['format']})"
    if schema.get("contentMediaType") == "application/octet-stream":
        text += " (base64)"
    return text


def _schema_limits(schema: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for branch in schema.get("anyOf", [schema]):
        for key, sign in (
            ("minimum", "≥"),
            ("ge", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("le", "≤"),
            ("exclusiveMaximum", "<"),
        ):
            if key in branch:
                value = branch[key]
                out.append(f"{sign} {int(value) if float(value).is_integer() else value}")
        for key, label in (("minLength", "min length"), ("maxLength", "max length")):
            if key in branch:
                out.append(f"{label} {branch[key]}")
        if "maxItems" in branch:
            out.append(f"at most {branch['maxItems']} items")
        if "pattern" in branch:
            out.append(f"matches `{branch['pattern']}`")
    return out


def _schema_section(name: str, schema: dict[str, Any]) -> str:
    lines = [f"### {name}\n"]
    if schema.get("description"):
        lines.append(rst_to_md(" ".join(schema["description"].split())) + "\n")
    if "enum" in schema:
        lines.append("One of: " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".\n")
        return "\n".join(lines)
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    rows = []
    for prop, sub in props.items():
        limits = _schema_limits(sub)
        type_text = _schema_text(sub) + (" (" + ", ".join(limits) + ")" if limits else "")
        if prop in required:
            default = "required"
        elif "default" in sub:
            default = f"`{json.dumps(sub['default'])}`"
        else:
            default = "-"
        rows.append((f"`{prop}`", type_text, default, rst_to_md(sub.get("description", ""))))
    if rows:
        lines.append(table(["field", "type", "default", "description"], rows))
    if schema.get("additionalProperties") is False:
        lines.append("Unknown fields are refused.\n")
    return "\n".join(lines)


def _operation_section(path: str, method: str, op: dict[str, Any]) -> str:
    lines = [f"#### `{method.upper()} {path}`\n"]
    summary = op.get("description") or op.get("summary") or ""
    lines.append(rst_to_md(summary.strip()) + "\n")
    params = op.get("parameters", [])
    if params:
        rows = []
        for p in params:
            schema = p.get("schema", {})
            limits = _schema_limits(schema)
            type_text = _schema_text(schema) + (" (" + ", ".join(limits) + ")" if limits else "")
            default = f"`{json.dumps(schema['default'])}`" if "default" in schema else "-"
            if p.get("required"):
                default = "required"
            rows.append((f"`{p['name']}`", p["in"], type_text, default))
        lines.append(table(["parameter", "in", "type", "default"], rows))
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            schema = content.get("schema", {})
            lines.append(f"Request body ({media}): {_schema_text(schema)}.\n")
    responses = []
    for status, resp in op.get("responses", {}).items():
        if status == "422":
            continue  # documented once, as the error envelope
        contents = resp.get("content", {})
        if not contents and status == "204":
            responses.append(f"`{status}`: no body")
        elif not contents:
            responses.append(f"`{status}`: see above (not described in openapi.json)")
        for media, content in contents.items():
            schema = content.get("schema")
            what = _schema_text(schema) if schema else "raw bytes"
            responses.append(f"`{status}` {media}: {what}")
    if responses:
        lines.append("Responses: " + "; ".join(responses) + ". Errors: the error envelope.\n")
    return "\n".join(lines)


def _error_meanings() -> dict[str, str]:
    """Each class's line in the exception tree drawn in ``protocol.errors``' docstring."""
    tree = re.findall(r"── (\w+) +(.+)", errors.__doc__ or "")
    return {name: text.strip() for name, text in tree}


def _error_rows() -> list[tuple[str, str, str, str]]:
    meanings = _error_meanings()
    rows = []
    for code, cls in errors.API_ERRORS.items():
        meaning = re.sub(r"^[\dx /]+(:\s*|$)", "", meanings.get(cls.__name__, ""))
        if cls.__name__ not in meanings:
            meaning = f"a more specific `{cls.__mro__[1].__name__}`"
        elif not meaning:
            meaning = re.sub(r"(?<!^)([A-Z])", r" \1", cls.__name__).lower()
        rows.append((f"`{code}`", str(cls.status), f"`{cls.__name__}`", rst_to_md(meaning)))
    return rows


def _message_schemas() -> dict[str, Any]:
    """Schemas of what the event streams carry; the OpenAPI document cannot describe them."""
    template = "#/components/schemas/{model}"
    found: dict[str, Any] = {}
    for model in (EventBatch, LogPage):
        schema = model.model_json_schema(ref_template=template, mode="serialization")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def rest_api_md(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    out = [
        banner("the gateway's OpenAPI document (`farside_gateway.app.create_app`)"),
        f"\n# REST API ({info.get('title', '')} {info.get('version', '')})\n\n",
        info.get("description", "") + "\n\n",
        rst_to_md(" ".join((models.__doc__ or "").split())) + "\n\n",
        "Every path below needs `Authorization: Bearer <token>`: user endpoints a user "
        "token, pilot endpoints the pilot's own token (a site token or a one-pilot "
        "registration token only for `POST /api/v1/pilots`). The gateway also serves this "
        "document at `/openapi.json` and an interactive page at `/docs`, both without a "
        "token. The machine-readable copy is [openapi.json](openapi.json).\n\n",
        "## Errors\n\n",
        "Every failure, including validation errors (which the OpenAPI document lists as "
        "`422 HTTPValidationError`), is answered with one JSON envelope:\n\n",
        '```json\n{"error": {"code": "conflict", "message": "...", "details": {}}}\n```\n\n',
        "`code` names the exception class of `farside_protocol.errors`; the client "
        "re-raises that class.\n\n",
        table(["code", "HTTP status", "exception", "meaning"], _error_rows()),
        "\n## Endpoints\n\n",
    ]
    by_tag: dict[str, list[str]] = {}
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append(_operation_section(path, method, op))
    for tag, sections in by_tag.items():
        out.append(f"### {tag.capitalize()}\n\n")
        out.append("\n".join(sections) + "\n")
    out.append("## Schemas\n\n")
    schemas: dict[str, Any] = {
        **_message_schemas(),
        **spec.get("components", {}).get("schemas", {}),
    }
    for name in sorted(schemas):
        if name in ("HTTPValidationError", "ValidationError"):
            continue
        out.append(_schema_section(name, schemas[name]) + "\n")
    return "".join(out).rstrip("\n") + "\n"
