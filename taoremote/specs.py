"""A sweep trial's experiment spec (pure): swept fields set, every other byte kept.

A TF1 spec is protobuf text, and we have no .proto schema for it. So the editor only ever changes a
scalar value that is already in the file: it tokenizes the text, indexes every field by its path,
and replaces the bytes of the value tokens that were asked for. Comments, spacing, field order,
`field { }` / `field: { }` and repeated fields stay exactly as the user wrote them
(reference/sweeps-and-slurm.md §A.3). Everything that could silently make a different spec than
the user meant — an unknown or ambiguous path, a message where a scalar was meant, a value that is
more than one token (`1e-3 }`) or of another kind — is a UsageError before anything starts.

A YAML spec (PyTorch tasks, Hydra) is never edited: the sweep appends `path=value` overrides to
the task's arguments, as TAO documents.

The functions take and return `str`. To keep the file's bytes, the caller reads and writes it
without newline translation (`bytes.decode("utf-8")`, or `open(..., newline="")`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn

from taoremote.errors import UsageError

SpecKind = Literal["protobuf", "yaml"]
YAML_SUFFIXES = (".yaml", ".yml")  # PyTorch (Hydra) specs; TF1 specs are .txt, .cfg, .prototxt, ...

_TOKEN = re.compile(
    r"""(?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<punct>[{}<>\[\]:;,])
    | (?P<word>[^\s{}<>\[\]:;,\#"']+)""",
    re.X,
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9]+)\])?\Z")
_NUMBER = re.compile(
    r"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[fF]?|0[xX][0-9a-fA-F]+|inf(?:inity)?|nan)\Z",
    re.I,
)
_STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"\Z|'(?:[^'\\\n]|\\.)*'\Z""")
_BARE_TEXT = re.compile(r"""[^\s"'\\]+\Z""")  # may be quoted for a string field as it is
_OVERRIDE_KEY = re.compile(r"(?:\+{1,2}|~)?[A-Za-z_][A-Za-z0-9_@/-]*(?:\.[A-Za-z0-9_@/-]+)*\Z")

Segment = tuple[str, int]  # a field name and which occurrence of that name in its message (from 0)


def spec_kind(path: str) -> SpecKind:
    """How a trial gets its values: `yaml` specs by overrides on the argv, all others by an edited copy."""
    return "yaml" if path.lower().endswith(YAML_SUFFIXES) else "protobuf"


@dataclass(frozen=True)
class _Field:
    path: tuple[Segment, ...]
    kind: Literal["scalar", "message", "list"]
    start: int = 0  # the value's span in the text (scalars)
    end: int = 0


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


class _Parser:
    """Recursive descent over protobuf text: `name [:] { ... }`, `name [:] < ... >`, `name: scalar`,
    `name: [ ... ]`, each optionally followed by `;` or `,`."""

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source, self.pos = text, source, 0
        self.tokens: list[_Token] = []
        self.fields: list[_Field] = []
        self.counts: dict[tuple[tuple[Segment, ...], str], int] = {}  # (message, name) -> occurrences
        self.in_list = 0  # what is inside a list value is not indexed: lists cannot be swept
        at = 0
        while at < len(text):
            m = _TOKEN.match(text, at)
            if m is None:
                self.fail(at, "unbalanced quote")
            if m.lastgroup not in ("space", "comment"):
                self.tokens.append(_Token(str(m.lastgroup), m.group(), m.start(), m.end()))
            at = m.end()
        self.body((), None)

    def fail(self, at: int, why: str) -> NoReturn:
        line = self.text.count("\n", 0, at) + 1
        raise UsageError(f"{self.source}, line {line}: {why}; it is not protobuf text that can be edited")

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def accept(self, punct: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == punct:
            self.pos += 1
            return True
        return False

    def record(self, field: _Field) -> None:
        if not self.in_list:
            self.fields.append(field)

    def body(self, prefix: tuple[Segment, ...], close: str | None) -> None:
        while True:
            tok = self.peek()
            if tok is None:
                if close is not None:
                    self.fail(len(self.text), f"missing {close!r} at the end")
                return
            if close is not None and self.accept(close):
                return
            if tok.kind != "word" or not _NAME.match(tok.text):
                self.fail(tok.start, f"expected a field name, found {tok.text!r}")
            self.pos += 1
            key = (prefix, tok.text)
            path = (*prefix, (tok.text, self.counts.get(key, 0)))
            self.counts[key] = self.counts.get(key, 0) + 1
            self.value(path, colon=self.accept(":"))
            if not self.accept(";"):
                self.accept(",")

    def value(self, path: tuple[Segment, ...], colon: bool) -> None:
        tok = self.peek()
        if tok is None:
            self.fail(len(self.text), f"{_canonical(path)} has no value")
        if tok.kind == "punct" and tok.text in "{<":
            self.pos += 1
            self.record(_Field(path, "message"))
            self.body(path, "}" if tok.text == "{" else ">")
        elif not colon:
            self.fail(tok.start, f"expected ':' or '{{' after {path[-1][0]}")
        elif self.accept("["):
            self.record(_Field(path, "list"))
            self.in_list += 1
            while not self.accept("]"):
                if self.peek() is None:
                    self.fail(tok.start, "a list that never closes")
                self.value(path, colon=True)
                self.accept(",")
            self.in_list -= 1
        elif tok.kind in ("string", "word"):
            self.pos += 1
            end = tok.end
            while tok.kind == "string" and (nxt := self.peek()) is not None and nxt.kind == "string":
                end, self.pos = nxt.end, self.pos + 1  # "a" "b" is one value
            self.record(_Field(path, "scalar", tok.start, end))
        else:
            self.fail(tok.start, f"unexpected {tok.text!r} after {path[-1][0]}:")


def _canonical(
    path: tuple[Segment, ...], counts: Mapping[tuple[tuple[Segment, ...], str], int] | None = None
) -> str:
    """`a.b[1].c`: an index only where that name repeats in its message."""
    parts = []
    for i, (name, index) in enumerate(path):
        repeats = (counts or {}).get((path[:i], name), 1) > 1
        parts.append(f"{name}[{index}]" if repeats else name)
    return ".".join(parts)


def _segments(path: str) -> list[tuple[str, int | None]]:
    found = []
    for part in path.split("."):
        m = _SEGMENT.match(part)
        if m is None:
            raise UsageError(f"--param {path}: not a dotted path of field names (like a.b[1].c)")
        found.append((m.group(1), int(m.group(2)) if m.group(2) is not None else None))
    return found


def _resolve(parser: _Parser, path: str) -> _Field:
    """The one field PATH names: a full path from the top, or else a unique tail of one."""
    want = _segments(path)

    def tail_matches(field: _Field) -> bool:
        tail = field.path[-len(want) :]
        return len(field.path) >= len(want) and all(
            name == have and index in (None, at) for (name, index), (have, at) in zip(want, tail, strict=True)
        )

    found = [f for f in parser.fields if tail_matches(f)]
    found = [f for f in found if len(f.path) == len(want)] or found
    names = [_canonical(f.path, parser.counts) for f in found]
    if not found:
        raise UsageError(f"--param {path}: no such field in {parser.source}")
    if len(found) > 1:
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise UsageError(
            f"--param {path}: ambiguous, {len(found)} fields in {parser.source} match ({shown}); "
            "give the full path, with NAME[N] for the N-th (from 0) of a repeated field"
        )
    field = found[0]
    if field.kind == "message":
        raise UsageError(f"--param {path}: {names[0]} is a message, not a scalar; name a field inside it")
    if field.kind == "list":
        raise UsageError(f"--param {path}: {names[0]} is a list; lists cannot be swept")
    return field


def _value_kind(token: str) -> Literal["string", "number", "name"]:
    if token[:1] in "\"'":
        return "string"
    return "number" if _NUMBER.match(token) else "name"


def _render(path: str, current: str, value: str) -> str:
    """VALUE as one token of the field's kind: numbers as written, names bare, strings quoted."""
    kind = _value_kind(current)
    one_token = _STRING.match(value) or _NUMBER.match(value) or _NAME.match(value)
    if kind == "string" and not one_token and _BARE_TEXT.match(value):
        return f"{current[0]}{value}{current[0]}"
    if not one_token:
        raise UsageError(
            f"--param {path}={value}: not one scalar value (a number, a name, true/false or a quoted string)"
        )
    if kind == "string":
        return value if value[:1] in "\"'" else f"{current[0]}{value}{current[0]}"
    if kind == "number" and not _NUMBER.match(value):
        raise UsageError(f"--param {path}={value}: the spec has a number there ({current}); give a number")
    if kind == "name" and not _NAME.match(value):
        raise UsageError(
            f"--param {path}={value}: the spec has a name there ({current}: an enum or true/false); give one"
        )
    return value


def scalar_paths(text: str, *, source: str = "the spec") -> dict[str, str]:
    """Every scalar field's canonical path (`a.b[1].c`) and its value as written, in file order."""
    parser = _Parser(text, source)
    return {
        _canonical(f.path, parser.counts): text[f.start : f.end] for f in parser.fields if f.kind == "scalar"
    }


def check_paths(text: str, paths: Iterable[str], *, source: str = "the spec") -> dict[str, str]:
    """Each PATH's canonical path; a UsageError for an unknown, ambiguous or non-scalar one, or for two
    paths that name the same field. For a search whose values are not known yet (TPE)."""
    parser = _Parser(text, source)
    return _check(parser, paths)


def _check(parser: _Parser, paths: Iterable[str]) -> dict[str, str]:
    canonical: dict[str, str] = {}
    for path in paths:
        name = _canonical(_resolve(parser, path).path, parser.counts)
        twin = next((p for p, c in canonical.items() if c == name), None)
        if twin is not None:
            raise UsageError(f"--param {path} and --param {twin} both name {name}")
        canonical[path] = name
    return canonical


def apply_params(
    text: str, params: Mapping[str, str] | Iterable[tuple[str, str]], *, source: str = "the spec"
) -> str:
    """TEXT with each swept field's value token replaced and every other byte as it was."""
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    parser = _Parser(text, source)
    _check(parser, (path for path, _ in pairs))
    edits = []
    for path, value in pairs:
        field = _resolve(parser, path)
        edits.append((field.start, field.end, _render(path, text[field.start : field.end], value)))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def spec_diff(original: str, edited: str, name: str = "spec.txt") -> str:
    """A unified diff of a trial's spec against the original, for `--dry-run` ('' when equal)."""
    lines = difflib.unified_diff(
        original.splitlines(), edited.splitlines(), f"a/{name}", f"b/{name}", lineterm=""
    )
    return "\n".join(lines)


def yaml_overrides(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """`path=value` arguments for a YAML (Hydra) spec. TAO's entrypoint joins its arguments with spaces
    and splits them again with shlex (reference §A.3), so a value with whitespace, a quote or a
    backslash would arrive as something else: refused."""
    found = []
    for path, value in params.items() if isinstance(params, Mapping) else params:
        if not _OVERRIDE_KEY.match(path):
            raise UsageError(f"--param {path}: not a dotted path of config keys (like train.optim.lr)")
        if not value or re.search(r"""[\s"'\\]""", value):
            why = "empty" if not value else "whitespace, quotes and backslashes do not survive TAO's argv"
            raise UsageError(f"--param {path}={value}: {why}")
        found.append(f"{path}={value}")
    return tuple(found)
