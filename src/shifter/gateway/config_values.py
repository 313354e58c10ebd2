"""Parsers for the individual values of imagemanager.json.

Each function takes what `json.loads` produced for one key and returns the normalised value,
or raises `ValueError` with a sentence that reads well after the key path
(`key 'ImageExpirationTimeout': must be ...`). They do no I/O: checking that a directory
exists is the job of whoever uses it, at the time it is used.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

IMAGE_FORMATS = ("squashfs", "ext4", "cramfs")

EXPIRATION_EXAMPLE = "90:00:00:00"

# A platform name travels in API paths (/api/pull/<system>/...) and a location name is a
# registry host[:port] or an alias; neither may contain '/' or whitespace.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*\Z")
_USER_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]*\$?\Z")
_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?\Z")
_STORE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")


def show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it in JSON, shortened so a message stays one line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def whole_number(value: Any, *, minimum: int) -> int:
    """An integer; a string of digits is accepted because the original called `int()` on it."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be a whole number, not {show(value)}")
    if isinstance(value, str):
        if not value.strip().isdecimal():
            raise ValueError(f"must be a whole number, not {show(value)}")
        value = int(value)
    if value < minimum:
        raise ValueError(f"must be at least {minimum}, not {value}")
    return value


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_size(value: Any) -> int | None:
    """CacheSizeLimit: bytes, or a number with K, M, G or T (binary units: "50G"); null
    for no limit."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        if value is not None and value < 0:
            raise ValueError(f"must not be negative, not {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f'must be a size such as "50G" or a number of bytes, not {show(value)}')
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text[-1:] in "KMGT" else (text, "")
    if not number.strip().isdecimal():
        raise ValueError(f'must be a size such as "50G" or a number of bytes, not {show(value)}')
    return int(number) * _SIZE_UNITS[unit]


def format_size(size: int | None) -> Any:
    """A size as `byte_size` reads it back, in the largest unit that divides it."""
    if size is None:
        return None
    for unit in "TGMK":
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return size


def seconds(value: Any) -> timedelta:
    """PullUpdateTimeout: a number of seconds."""
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=whole_number(value, minimum=0))


def parse_expiration(text: Any) -> timedelta:
    """`"D:H:M:S"` (days:hours:minutes:seconds) as the original reads it.

    Fields may have any width and need not be normalised ("0:48:00:00" is two days), as
    with the original's `int()` of each field; they must be non-negative.
    """
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str):
        raise ValueError(
            f'must be a string "D:HH:MM:SS" such as "{EXPIRATION_EXAMPLE}", not {show(text)}'
        )
    fields = text.strip().split(":")
    if len(fields) != 4 or not all(f.strip().isdecimal() for f in fields):
        raise ValueError(
            "must be days:hours:minutes:seconds (four whole numbers, "
            f'such as "{EXPIRATION_EXAMPLE}"), not {show(text)}'
        )
    days, hours, minutes, secs = (int(f) for f in fields)
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=secs)


def format_expiration(duration: timedelta) -> str:
    """The canonical "D:HH:MM:SS" form of a non-negative whole-second duration."""
    total = int(duration.total_seconds())
    if total < 0 or timedelta(seconds=total) != duration:
        raise ValueError(f"cannot write {duration} as D:HH:MM:SS")
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}:{hours:02d}:{minutes:02d}:{secs:02d}"


def absolute_path(value: Any) -> str:
    """A path on the gateway host; relative paths would depend on the daemon's cwd."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"must be an absolute path, not {show(value)}")
    return value


def name(value: str, *, what: str) -> str:
    """A key of Platforms or Locations."""
    if not _NAME.match(value):
        raise ValueError(
            f"{what} name {show(value)} must start with a letter or digit and contain only "
            "letters, digits, '.', '_', ':' and '-'"
        )
    return value


def user_name(value: Any) -> str:
    """A user name; one starting with '-' could pass as an option to ssh."""
    if not isinstance(value, str) or not _USER_NAME.match(value):
        raise ValueError(f"must be a user name, not {show(value)}")
    return value


def name_list(value: Any) -> Any:
    """A JSON list of user names, before its items are checked one by one.

    A plain string is refused: the original tested `user in admins`, so "root" also let
    in a user called "oo".
    """
    if isinstance(value, str):
        raise ValueError(f"must be a list of user names; for one user write [{show(value)}]")
    if not isinstance(value, list | tuple):
        raise ValueError(f'must be a list of user names such as ["root"], not {show(value)}')
    return value


def import_users(value: Any) -> frozenset[str] | str | None:
    """ImportUsers: "all", "none" or a list of user names; None means import is disabled.

    The original did a substring test on a plain string and let an empty list or "" allow
    everyone; here an empty list allows nobody and other strings are refused.
    """
    if value is None or value in ("none", "None"):
        return None
    if value == "all":
        return "all"
    if isinstance(value, str):
        raise ValueError(
            f'must be "all", "none" or a list of user names, not {show(value)}; '
            f"for one user write [{show(value)}]"
        )
    return frozenset(user_name(item) for item in name_list(value))


def converter_options(value: Any) -> dict[str, tuple[str, ...]]:
    """ConverterOptions: {format: "opt opt" | ["opt", ...]}; a string is split like a shell."""
    if not isinstance(value, Mapping):
        raise ValueError(
            "must be an object mapping an image format to options, such as "
            f'{{"squashfs": "-comp zstd"}}, not {show(value)}'
        )
    result: dict[str, tuple[str, ...]] = {}
    for fmt, options in value.items():
        if fmt not in IMAGE_FORMATS:
            raise ValueError(f"unknown image format {show(fmt)}; use {either(IMAGE_FORMATS)}")
        if isinstance(options, str):
            try:
                result[fmt] = tuple(shlex.split(options))
            except ValueError as error:
                raise ValueError(f"options for {fmt} do not split: {error}") from None
        elif isinstance(options, list | tuple) and all(isinstance(o, str) for o in options):
            result[fmt] = tuple(options)
        else:
            raise ValueError(
                f"options for {fmt} must be a string or a list of strings, not {show(options)}"
            )
    return result


def _only(value: Any, accepted: str, refused: Mapping[str, str]) -> str:
    """A key with one working value; values the original had are refused with a reason."""
    if isinstance(value, str) and value in refused:
        raise ValueError(refused[value])
    if value != accepted:
        raise ValueError(f'must be "{accepted}", not {show(value)}')
    return value


def remote_type(value: Any) -> str:
    """Locations.*.remotetype: only the Docker registry v2 API."""
    reason = (
        '"dockerhub" was deprecated in the original Shifter and is not supported; '
        'use "dockerv2" (Docker Hub speaks it too)'
    )
    return _only(value, "dockerv2", {"dockerhub": reason})


def authentication(value: Any) -> str:
    """Authentication: only munge; the original's "mock" is refused."""
    reason = (
        '"mock" is refused: it believes whatever user name a client sends, so anyone '
        'could act as anyone, admins included; use "munge"'
    )
    return _only(value, "munge", {"mock": reason})


def log_level(value: Any) -> str:
    """LogLevel, case-insensitive; the original's "warn" means "warning"."""
    levels = ("debug", "info", "warning", "error", "critical")
    text = value.lower() if isinstance(value, str) else value
    text = "warning" if text == "warn" else text
    if text not in levels:
        raise ValueError(f"must be {either(levels)}, not {show(value)}")
    return text


def registry_url(value: Any) -> str:
    """Locations.*.url: "https://host[:port]" (or http://), without a path.

    The registry API always lives at /v2/ on the host; the original silently ignored a
    path here, so one is refused rather than ignored. A trailing "/" is dropped.
    """
    if not isinstance(value, str):
        raise ValueError(f'must be a URL such as "https://registry.example.org", not {show(value)}')
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"must be an https:// or http:// URL with a host, not {show(value)}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(
            f"must be a base URL without path, query or credentials, not {show(value)} "
            "(the registry API is always at /v2/ on the host)"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError(f"has an invalid port: {show(value)}") from None
    return f"{parts.scheme}://{parts.netloc}"


def metadata_store(value: Any) -> str:
    """MetadataStore: an SQLAlchemy URL for SQLite (absolute file) or PostgreSQL.

    The value is never echoed back: a PostgreSQL URL may carry a password.
    """
    if not isinstance(value, str) or "://" not in value:
        raise ValueError(
            'must be a URL such as "sqlite:////var/lib/shifter/imagegw.sqlite" '
            'or "postgresql://user@dbhost/shifter"'
        )
    scheme, rest = value.split("://", 1)
    if scheme not in _STORE_SCHEMES:
        raise ValueError(
            f"has the unsupported scheme {show(scheme)}; use sqlite:// or postgresql://"
        )
    if scheme.startswith("sqlite") and not rest.startswith("//"):
        raise ValueError(
            "must name an absolute SQLite file with four slashes, such as "
            '"sqlite:////var/lib/shifter/imagegw.sqlite" (an in-memory or relative '
            "database would not be shared by the gateway's threads or survive a restart)"
        )
    if scheme.startswith("postgresql") and not urlsplit(value).hostname and "host=" not in rest:
        raise ValueError('must name a PostgreSQL host, such as "postgresql://user@dbhost/shifter"')
    return value


def sqlalchemy_url(url: str) -> str:
    """MetadataStore with the driver made explicit: plain postgresql:// would make
    SQLAlchemy look for psycopg2, and the gateway ships psycopg 3."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme == "postgresql" else url


def platform_spec(value: Any) -> str:
    """DefaultPlatform: an OCI platform "os/arch" or "os/arch/variant"."""
    if not isinstance(value, str) or not _PLATFORM.match(value):
        raise ValueError(
            f'must be an OCI platform such as "linux/amd64" or "linux/arm64/v8", not {show(value)}'
        )
    return value


def either(choices: tuple[str, ...]) -> str:
    """'a, b or c': how messages list the allowed values."""
    return ", ".join(choices[:-1]) + " or " + choices[-1]
