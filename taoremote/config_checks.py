"""What a mounts file must satisfy: its JSON Schema (schemas/mounts.schema.json) plus the checks a schema
cannot express (duplicate destinations, disagreeing modes, env values an env-file cannot carry, lone
surrogates). Every problem comes back at once, each with its `$.json.path`, in path order. PURE: it
receives the parsed document; config.py reads the file and turns a valid document into dataclasses.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    from importlib import resources  # ~3 ms: only when a file is validated, not to read destination_key

    text = resources.files("taoremote").joinpath("schemas/mounts.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate_mounts_document(doc: object) -> list[str]:
    """Every problem in the document, as '$.json.path: message' lines, in path order."""
    from jsonschema import Draft202012Validator  # slow import, needed only when a file exists

    validator = Draft202012Validator(_schema())
    problems = [(e.json_path, _describe(e)) for e in validator.iter_errors(doc)]
    problems.extend(_duplicate_destinations(doc))
    problems.extend(_conflicting_modes(doc))
    problems.extend(_env_values_an_env_file_cannot_carry(doc))
    problems.extend(_lone_surrogates(doc, "$"))
    return [f"{where}: {what}" for where, what in sorted(set(problems), key=_path_order)]


def format_problems(path: str, problems: list[str]) -> str:
    noun = "problem" if len(problems) == 1 else "problems"
    return f"{path}: {len(problems)} {noun} in mounts file:\n  " + "\n  ".join(problems)


def _path_order(item: tuple[str, str]) -> tuple[list[object], str]:
    parts: list[object] = [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", item[0]) if p]
    return [(0, p) if isinstance(p, int) else (1, p) for p in parts], item[1]


def _describe(error: Any) -> str:
    """jsonschema's messages, rewritten where they would not tell a user what to do."""
    validator, schema, instance = error.validator, error.schema, error.instance
    if validator == "additionalProperties":
        allowed = ", ".join(schema.get("properties", {}))
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        names = ", ".join(repr(k) for k in extra)
        return f"unknown key{'s' if len(extra) > 1 else ''} {names}; allowed: {allowed}"
    if validator == "pattern" and schema.get("pattern") == "^/":
        return f"{instance!r} must be an absolute container path (starting with /)"
    if validator == "oneOf" and error.json_path.startswith("$.Envs["):
        return "give exactly one of 'value' or 'from_env'"
    if validator in ("not", "minLength") and re.search(r"\.(variable|from_env)$", error.json_path):
        return (
            f"{instance!r} is not a variable name docker can pass: it must not be empty, hold '=', "
            "whitespace or NUL, or start with '#'"
        )
    if validator in ("anyOf", "oneOf"):
        return f"{instance!r} is not a valid value here"
    if validator == "propertyNames" or (validator == "pattern" and "propertyNames" in error.schema_path):
        if "ports" in error.json_path:
            return f'{instance!r} is not a container port (e.g. "8888" or "8888/udp")'
        return f"{instance!r} is not a valid key here"
    return str(error.message)


def destination_key(destination: str) -> str:
    """`/workspace/x` and `/workspace/x/` are the same place in the container."""
    return destination.rstrip("/") or "/"


def _duplicate_destinations(doc: object) -> list[tuple[str, str]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("Mounts"), list):
        return []
    seen: dict[str, int] = {}
    found = []
    for index, mount in enumerate(doc["Mounts"]):
        dest = mount.get("destination") if isinstance(mount, dict) else None
        if not isinstance(dest, str):
            continue
        key = destination_key(dest)
        if key in seen:
            found.append(
                (
                    f"$.Mounts[{index}].destination",
                    f"{dest!r} is already the destination of $.Mounts[{seen[key]}]",
                )
            )
        else:
            seen[key] = index
    return found


def _conflicting_modes(doc: object) -> list[tuple[str, str]]:
    mounts = doc.get("Mounts") if isinstance(doc, dict) else None
    found = []
    for index, mount in enumerate(mounts if isinstance(mounts, list) else []):
        both = isinstance(mount, dict) and "mode" in mount and "read_only" in mount
        if both and (mount["mode"] == "ro") != mount["read_only"]:
            found.append((f"$.Mounts[{index}]", '"mode" and "read_only" disagree; keep one of them'))
    return found


def _env_values_an_env_file_cannot_carry(doc: object) -> list[tuple[str, str]]:
    """docker's --env-file is one NAME=value per line: a newline, CR or NUL in a value would split or cut
    it, and docker then echoes the pieces (the secret) in its error. Named by variable, never by value."""
    envs = doc.get("Envs") if isinstance(doc, dict) else None
    found = []
    for index, env in enumerate(envs if isinstance(envs, list) else []):
        value = env.get("value") if isinstance(env, dict) else None
        if isinstance(value, str):
            bad = [what for char, what in _UNCARRIABLE.items() if char in value]
            if bad:
                name = env.get("variable")
                found.append(
                    (
                        f"$.Envs[{index}].value",
                        f"the value of {name!r} holds {' and '.join(bad)}, which an env-file cannot carry",
                    )
                )
    return found


_UNCARRIABLE = {"\n": "a newline", "\r": "a carriage return (CR)", "\0": "a NUL"}


def uncarriable_in(value: str) -> list[str]:
    """What in an env value docker's env-file cannot carry (newline, CR, NUL, a lone surrogate)."""
    bad = [what for char, what in _UNCARRIABLE.items() if char in value]
    if not _is_unicode(value):
        bad.append("a lone surrogate (not valid Unicode)")
    return bad


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogates(doc: object, where: str) -> list[tuple[str, str]]:
    """JSON escapes like \\udc80 decode to lone surrogates, which no file or argv can hold."""
    found: list[tuple[str, str]] = []
    if isinstance(doc, str):
        if not _is_unicode(doc):
            found.append((where, "holds a lone surrogate (a \\udXXX escape that is not valid Unicode)"))
    elif isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(key, str) and not _is_unicode(key):
                found.append((where, "a key holds a lone surrogate (not valid Unicode)"))
            else:
                found.extend(_lone_surrogates(value, f"{where}.{key}"))
    elif isinstance(doc, list):
        for index, item in enumerate(doc):
            found.extend(_lone_surrogates(item, f"{where}[{index}]"))
    return found
