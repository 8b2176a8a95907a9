"""The configuration and environment pages: from the config models and the FARSIDE_* list."""

from __future__ import annotations

import enum
import inspect
import json
import re
import tomllib
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator, SecretStr
from pydantic.fields import FieldInfo

from farside_protocol import env
from farside_protocol.units import format_memory, parse_memory, parse_walltime

from .. import config as config_module
from ..config import GatewayConfig, SiteConfig
from .markdown import banner, rst_to_md, table

# ---------------------------------------------------------------- configuration


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _bound(value: object, kind: str) -> str:
    if kind == "size" and isinstance(value, int):
        return format_memory(value)
    if kind == "duration" and isinstance(value, int):
        for unit, seconds in (("d", 86400), ("h", 3600), ("min", 60)):
            if value >= seconds and value % seconds == 0:
                return f"{value // seconds} {unit}"
        return f"{value} s"
    return str(value)


def _constraints(metadata: Iterable[object], kind: str) -> list[str]:
    out: list[str] = []
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            out.append(f"≥ {_bound(item.ge, kind)}")
        elif isinstance(item, annotated_types.Gt):
            out.append(f"> {_bound(item.gt, kind)}")
        elif isinstance(item, annotated_types.Le):
            out.append(f"≤ {_bound(item.le, kind)}")
        elif isinstance(item, annotated_types.Lt):
            out.append(f"< {_bound(item.lt, kind)}")
        elif isinstance(item, FieldInfo):
            out += _constraints(item.metadata, kind)
        elif isinstance(pattern := getattr(item, "pattern", None), str):
            out.append(f"matches `{pattern}`")
    return out


def _kind_of(metadata: Iterable[object]) -> str | None:
    for item in metadata:
        if isinstance(item, BeforeValidator):
            if item.func is parse_memory:
                return "size"
            if item.func is parse_walltime:
                return "duration"
    return None


_KIND_TEXT = {
    "size": "size: bytes or e.g. `'4 GiB'`",
    "duration": "duration: seconds or e.g. `'2h'`",
}
_SCALARS: dict[object, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "string (secret)",
    Any: "any",
}


def _type_text(annotation: Any, metadata: Sequence[object] = ()) -> str:
    """A reader's description of a field's type, with its constraints."""
    kind = _kind_of(metadata)
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extras = get_args(annotation)
        return _type_text(base, [*extras, *metadata])
    if origin in (Union, types.UnionType):
        parts = [a for a in get_args(annotation) if a is not type(None)]
        text = " or ".join(_type_text(a, metadata) for a in parts)
        return text + (", optional" if len(parts) < len(get_args(annotation)) else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    if origin is list:
        (item,) = get_args(annotation)
        if item is SiteConfig:
            return "list of [site tables](#sites)"
        return f"list of {_type_text(item)}"
    if origin is dict:
        return "table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table (see below)"
    name = getattr(annotation, "__name__", str(annotation))
    text = _KIND_TEXT[kind] if kind else _SCALARS.get(annotation, name)
    limits = _constraints(metadata, kind or "")
    return text + (" (" + ", ".join(limits) + ")" if limits else "")


def _factory_doc(field: FieldInfo) -> str | None:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("doc_default"), str):
        return str(extra["doc_default"])
    factory = field.default_factory
    if isinstance(factory, type) and issubclass(factory, BaseModel):
        return "see below"
    if factory in (dict, list):
        return "`{}`" if factory is dict else "`[]`"
    doc = getattr(factory, "__doc__", None)
    return " ".join(doc.split()) if doc else None


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return _factory_doc(field) or "computed at start-up (see description)"
    if field.default is None:
        return "unset"
    return f"`{_toml_value(field.default)}`"


def _fields_table(model: type[BaseModel]) -> str:
    rows = [
        (f"`{name}`", _type_text(f.annotation, f.metadata), _default_text(f), f.description or "")
        for name, f in model.model_fields.items()
    ]
    return table(["setting", "type", "default", "description"], rows)


def config_example() -> str:
    """The TOML example of :mod:`farside_gateway.config`'s docstring, validated."""
    doc = config_module.__doc__ or ""
    match = re.search(r"\.\. code-block:: toml\n\n((?:    .*\n|\n)+)", doc + "\n")
    if match is None:
        raise RuntimeError("farside_gateway.config's docstring has no `.. code-block:: toml`")
    text = "\n".join(line[4:] for line in match.group(1).splitlines()).strip() + "\n"
    GatewayConfig.model_validate(tomllib.loads(text))
    return text


def _sub_tables() -> list[tuple[str, type[BaseModel]]]:
    """Settings of GatewayConfig that are tables of their own (``[fair_share]``, ...)."""
    found = []
    for name, f in GatewayConfig.model_fields.items():
        factory = f.default_factory
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            found.append((name, factory))
    return found


def _commented(model: type[BaseModel]) -> list[str]:
    lines = []
    for name, f in model.model_fields.items():
        if f.is_required():
            lines.append(f"# {name} = ...  # required")
        elif f.default_factory is not None:
            shown = {dict: "{}", list: "[]"}.get(f.default_factory, "...  # computed")  # type: ignore[call-overload]
            lines.append(f"# {name} = {shown}")
        elif f.default is None:
            lines.append(f"# {name} =  # unset")
        else:
            lines.append(f"# {name} = {_toml_value(f.default)}")
    return lines


def _all_settings_toml() -> str:
    lines = ["# every setting, commented out at its default"]
    tables = dict(_sub_tables())
    for name, f in GatewayConfig.model_fields.items():
        if name == "sites" or name in tables:
            continue
        if f.default_factory is not None or f.is_required():
            lines.append(f"# {name} = ...  # {_default_text(f)}")
        elif f.default is None:
            lines.append(f"# {name} =  # unset")
        else:
            lines.append(f"# {name} = {_toml_value(f.default)}")
    for name, model in tables.items():
        lines += ["", f"[{name}]", *_commented(model)]
    lines += ["", "[[sites]]"]
    lines += [
        'name = "local"  # required' if line.startswith("# name =") else line
        for line in _commented(SiteConfig)
    ]
    return "\n".join(lines) + "\n"


def _sub_table_sections() -> list[str]:
    parts = []
    for name, model in _sub_tables():
        parts += [
            f"\n## `[{name}]`\n\n",
            rst_to_md(inspect.cleandoc(model.__doc__ or "")),
            "\n\n",
            _fields_table(model),
        ]
    return parts


def configuration_md() -> str:
    gateway_doc = GatewayConfig.__doc__ or ""
    site_doc = SiteConfig.__doc__ or ""
    return "".join(
        [
            banner("`farside_gateway/config.py`"),
            "\n# Configuration reference\n\n",
            "A gateway reads one TOML file (`farside gateway --config FILE`, or "
            "`farside up --config FILE`). Every setting below may appear at its top level; "
            "sites are `[[sites]]` tables. Unknown keys are errors. Command-line flags "
            "(`--host`, `--port`, `--state-dir`, `--database-url`) override the file. "
            "Sizes accept `'4 GiB'`, `'512MB'` or bytes; durations accept `'2h'`, `'10m'`, "
            "`'HH:MM:SS'` or seconds.\n\n",
            "## Example\n\n```toml\n",
            config_example(),
            "```\n\n",
            "## Gateway settings\n\n",
            rst_to_md(gateway_doc.strip()),
            "\n\n",
            _fields_table(GatewayConfig),
            *_sub_table_sections(),
            "\n## Sites\n\n",
            rst_to_md(site_doc.strip()),
            " Each `[[sites]]` table takes:\n\n",
            _fields_table(SiteConfig),
            "\n## Every setting at its default\n\n```toml\n",
            _all_settings_toml(),
            "```\n",
        ]
    )


# ---------------------------------------------------------------- environment


def environment_md() -> str:
    rows = [
        (f"`{v.name}`", v.used_by, v.default if v.default is not None else "-", v.help)
        for v in env.VARIABLES
    ]
    return "".join(
        [
            banner("`farside_protocol/env.py`"),
            "\n# Environment variables\n\n",
            rst_to_md((env.__doc__ or "").split("``docs/")[0].strip()),
            "\n\n",
            "A pilot's command-line flags (`farside pilot --help`) override these variables; "
            "the client's `url=`/`token=` arguments override `FARSIDE_GATEWAY_URL` and "
            "`FARSIDE_TOKEN`.\n\n",
            table(["variable", "used by", "default", "meaning"], rows),
        ]
    )
