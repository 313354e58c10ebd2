"""From imagemanager.json text to data pydantic can validate, and back to readable errors.

Three jobs, kept apart from the model itself (`shifter.gateway.config`):

- read the file and the JSON, remembering the line of every key so that any later
  message can say `FILE:LINE`;
- walk the data alongside the model: drop the original's obsolete keys (the caller warns),
  and report unknown keys with their full path and the closest known key;
- turn a pydantic `ValidationError` into one sentence per problem.
"""

from __future__ import annotations

import bisect
import difflib
import json
import os
import re
import stat
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from json.decoder import scanstring
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from shifter.errors import ConfigError
from shifter.gateway.config_values import show

KeyPath = tuple[str | int, ...]

# The placeholder for a free-form name (a platform, a registry) in documented key paths.
NAME_PLACEHOLDER = "<name>"

_WHITESPACE = re.compile(r"[ \t\n\r]*")


def render_path(path: KeyPath) -> str:
    """('Platforms', 'x', 'admins', 0) -> "Platforms.x.admins[0]"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True, order=True)
class ConfigProblem:
    """One thing wrong in the file; sorts by line so messages follow the file."""

    line: int
    key: str
    message: str

    def render(self, source: str | None) -> str:
        located = ConfigError(self.message, source=source, line=self.line or None, key=self.key)
        return str(located)


class GatewayConfigError(ConfigError):
    """Every problem found in one imagemanager.json, one line each; the first is the headline."""

    def __init__(
        self, problems: Sequence[ConfigProblem], *, source: str | None, hint: str | None = None
    ) -> None:
        first = problems[0]
        super().__init__(
            first.message, source=source, line=first.line or None, key=first.key, hint=hint
        )
        self.problems = tuple(problems)

    def __str__(self) -> str:
        return "\n".join(problem.render(self.source) for problem in self.problems)


def key_error(subkey: str | Sequence[str], message: str) -> PydanticCustomError:
    """An error a model validator raises for one of its keys rather than for itself.

    pydantic places errors from a model validator at the model; `subkey` (relative to it)
    lets `problems_from` name the key the user has to fix.
    """
    parts = (subkey,) if isinstance(subkey, str) else tuple(subkey)
    return PydanticCustomError("shifter_config", "{message}", {"message": message, "subkey": parts})


# ---- reading -------------------------------------------------------------------------


def read_config_text(path: str) -> str:
    """The file's text; refuses a file every user may write (it decides what gets pulled
    where, and which users are admins)."""
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError("is not a regular file", source=path)
            if info.st_mode & stat.S_IWOTH:
                raise ConfigError(
                    "is writable by every user, who could then choose the gateway's "
                    "registries, image directories and admins",
                    source=path,
                    hint=f"chmod o-w {path}",
                )
            raw = handle.read()
    except IsADirectoryError:
        raise ConfigError("is a directory, not a configuration file", source=path) from None
    except FileNotFoundError:
        raise  # the loader knows who named the file and says so
    except OSError as error:
        raise ConfigError(f"cannot be read: {error.strerror}", source=path) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError("is not UTF-8 text", source=path, line=line) from None


@dataclass
class KeyLines:
    """The line of every key path in a JSON text; the last occurrence wins, as in json."""

    lines: dict[KeyPath, int] = field(default_factory=dict)
    duplicates: list[ConfigProblem] = field(default_factory=list)

    def line_of(self, path: KeyPath) -> int:
        """The key's line, else its nearest ancestor's (a missing key is reported where its
        parent starts); 0 when nothing is known, as for built-in defaults."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 0


class _KeyLineScanner:
    """Walks JSON text that `json.loads` already accepted, noting where each key starts.

    Reliable because it re-reads the same grammar with the json module's own string and
    value scanners, rather than searching the text for key names.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.result = KeyLines()
        self._newlines = [i for i, char in enumerate(text) if char == "\n"]
        self._decoder = json.JSONDecoder()

    def _line(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _skip(self, pos: int) -> int:
        match = _WHITESPACE.match(self.text, pos)
        return match.end() if match else pos

    def value(self, pos: int, path: KeyPath) -> int:
        pos = self._skip(pos)
        opener = self.text[pos]
        if opener == "{":
            return self._object(pos + 1, path)
        if opener == "[":
            return self._array(pos + 1, path)
        return self._decoder.raw_decode(self.text, pos)[1]

    def _object(self, pos: int, path: KeyPath) -> int:
        pos = self._skip(pos)
        if self.text[pos] == "}":
            return pos + 1
        while True:
            key, end = scanstring(self.text, pos + 1)
            here = (*path, key)
            line = self._line(pos)
            if here in self.result.lines:
                first = self.result.lines[here]
                self.result.duplicates.append(
                    ConfigProblem(
                        line,
                        render_path(here),
                        f"is given twice (lines {first} and {line}); remove one",
                    )
                )
            self.result.lines[here] = line
            pos = self._skip(self._skip(end) + 1)  # past the ':'
            pos = self._skip(self.value(pos, here))
            if self.text[pos] == "}":
                return pos + 1
            pos = self._skip(pos + 1)  # past the ','

    def _array(self, pos: int, path: KeyPath) -> int:
        pos = self._skip(pos)
        if self.text[pos] == "]":
            return pos + 1
        index = 0
        while True:
            pos = self._skip(pos)
            self.result.lines[(*path, index)] = self._line(pos)
            pos = self._skip(self.value(pos, (*path, index)))
            if self.text[pos] == "]":
                return pos + 1
            pos += 1
            index += 1


def read_json_object(text: str, source: str | None) -> tuple[dict[str, Any], KeyLines]:
    """The top-level JSON object and the line of each key in it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"is not valid JSON: {error.msg} (column {error.colno})",
            source=source,
            line=error.lineno,
            hint="JSON allows no comments and no comma after the last item",
        ) from None
    except RecursionError:
        raise ConfigError("nests JSON objects or lists too deeply to read", source=source) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"must hold a JSON object {{...}} at the top level, not {show(data, 20)}",
            source=source,
        )
    scanner = _KeyLineScanner(text)
    scanner.value(0, ())
    return data, scanner.result


# ---- the key walk --------------------------------------------------------------------


def _nested(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """("model", M) for a section, ("mapping", M) for {name: section}, else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _nested(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found = [n for n in map(_nested, typing.get_args(annotation)) if n is not None]
        return found[0] if found else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("model", annotation)
    if origin in (dict, Mapping):
        inner = _nested(typing.get_args(annotation)[1])
        return ("mapping", inner[1]) if inner else None
    return None


def section_keys(model: type[BaseModel]) -> dict[str, tuple[str, type[BaseModel]] | None]:
    """The JSON keys a section accepts, each with its nested section if it has one."""
    return {
        info.alias or name: _nested(info.annotation) for name, info in model.model_fields.items()
    }


def obsolete_keys(model: type[BaseModel]) -> Mapping[str, str]:
    """The original's keys a section still accepts, each with what replaces it."""
    return getattr(model, "obsolete_keys", {})


def iter_key_paths(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, bool]]:
    """Every documented key path ("Platforms.<name>.ssh.key"), with True for obsolete keys."""
    for key, nested in section_keys(model).items():
        path = f"{prefix}{key}"
        yield path, False
        if nested is not None:
            kind, sub = nested
            inner = f"{path}.{NAME_PLACEHOLDER}." if kind == "mapping" else f"{path}."
            yield from iter_key_paths(sub, inner)
    for key in obsolete_keys(model):
        yield f"{prefix}{key}", True


@dataclass
class KeyCheck:
    """What the key walk found: the data to validate, unknown keys, obsolete keys."""

    cleaned: dict[str, Any]
    unknown: list[tuple[KeyPath, str]] = field(default_factory=list)
    obsolete: list[tuple[KeyPath, str]] = field(default_factory=list)


def check_keys(data: dict[str, Any], model: type[BaseModel]) -> KeyCheck:
    """Walk `data` alongside `model`, removing obsolete and unknown keys and noting them."""
    check = KeyCheck(cleaned={})
    check.cleaned = _prune(data, model, (), check)
    return check


def _prune(data: Any, model: type[BaseModel], path: KeyPath, check: KeyCheck) -> Any:
    if not isinstance(data, dict):
        return data  # validation reports the wrong type, with the key's line
    known = section_keys(model)
    replaced = obsolete_keys(model)
    kept: dict[str, Any] = {}
    for key, value in data.items():
        here = (*path, key)
        if key in known:
            nested = known[key]
            if nested is not None and nested[0] == "model":
                value = _prune(value, nested[1], here, check)
            elif nested is not None and isinstance(value, dict):
                value = {k: _prune(v, nested[1], (*here, k), check) for k, v in value.items()}
            kept[key] = value
        elif key in replaced:
            check.obsolete.append((here, replaced[key]))
        else:
            check.unknown.append((here, _unknown_key_message(key, sorted(known))))
    return kept


def _unknown_key_message(key: str, known: list[str]) -> str:
    by_case = [k for k in known if k.lower() == key.lower()]
    close = by_case or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"is not a known key; did you mean {close[0]!r}?"
    return f"is not a known key; the keys here are {', '.join(known)}"


# ---- validation errors ---------------------------------------------------------------

_TYPE_SENTENCES = {
    "missing": "is required",
    "extra_forbidden": "is not a known key",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list [...]",
    "tuple_type": "must be a list [...]",
    "dict_type": "must be an object {...}",
    "mapping_type": "must be an object {...}",
    "model_type": "must be an object {...}",
    "model_attributes_type": "must be an object {...}",
}


def _sentence(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "shifter_config":
        return str(ctx["message"])
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "literal_error":
        return f"must be {ctx['expected'].replace(chr(39), chr(34))}, not {show(error['input'])}"
    if kind in ("missing", "extra_forbidden"):
        return _TYPE_SENTENCES[kind]
    base = _TYPE_SENTENCES.get(kind)
    if base is None:
        msg = str(error["msg"])
        base = msg[:1].lower() + msg[1:]
    return f"{base}, not {show(error['input'])}"


def problems_from(error: ValidationError, lines: KeyLines) -> list[ConfigProblem]:
    """One sentence per pydantic error, at the key's path and line."""
    problems = []
    for item in error.errors(include_url=False):
        path: KeyPath = tuple(item["loc"])
        ctx = item.get("ctx") or {}
        if item["type"] == "shifter_config":
            path = (*path, *ctx["subkey"])
        problems.append(ConfigProblem(lines.line_of(path), render_path(path), _sentence(item)))
    return problems
