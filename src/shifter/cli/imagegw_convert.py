"""`shifter-imagegw convert`: pull one image and convert it into a directory.

Settings come from the command line, then from the imagemanager.json given with `--config`
(Locations, ConverterOptions, CacheDirectory, DefaultPlatform, DefaultImageFormat,
LayerDownloadConcurrency, ImageOwnership, ExpandDirectory), then from built-in defaults:
without `--config` no file is read, any registry named in the reference is contacted
(https, or http with `--insecure`), and layers are cached in `$XDG_CACHE_HOME/shifter`
(`~/.cache/shifter`). The image id is printed as the last line of stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shifter.engine.progress import PullProgress
    from shifter.engine.pull import PullOptions
    from shifter.gateway.config import GatewayConfig

FORMATS = ("squashfs", "ext4", "cramfs")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="pull an image from a registry and convert it into DEST_DIR",
        description="Pull IMAGE_REF from its registry and write <id>.<format>, <id>.json and "
        "<id>.meta into DEST_DIR; print the image id as the last line.",
    )
    parser.add_argument("image", metavar="IMAGE_REF", help="e.g. ubuntu:22.04, host:5000/org/app:1")
    parser.add_argument("dest_dir", metavar="DEST_DIR", type=Path, help="created if missing")
    parser.add_argument("--config", metavar="FILE", help="imagemanager.json to take settings from")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="reach registries without a configured URL over plain http, and allow "
        "credentials over plain http",
    )
    parser.add_argument("--creds", metavar="USER:PASS", help="registry credentials")
    parser.add_argument("--ca", metavar="FILE", help="CA certificate (PEM) to verify the registry")
    parser.add_argument(
        "--platform", metavar="OS/ARCH[/VARIANT]", help="default: DefaultPlatform, linux/amd64"
    )
    parser.add_argument("--format", choices=FORMATS, help="default: DefaultImageFormat, squashfs")
    parser.add_argument("--cache", metavar="DIR", type=Path, help="layer cache directory")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logging, and a traceback on errors",
    )
    parser.set_defaults(handler=run)


def default_cache_dir(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """`$XDG_CACHE_HOME/shifter`, else `~/.cache/shifter`: writable without any setup."""
    base = environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shifter"


def parse_creds(text: str | None) -> tuple[str, str] | None:
    from shifter.errors import ParseError

    if text is None:
        return None
    user, colon, password = text.partition(":")  # the password may hold colons
    if not user or not colon:
        raise ParseError("--creds must be USER:PASSWORD", hint="e.g. --creds alice:secret")
    return user, password


def pull_options(config: GatewayConfig, args: argparse.Namespace) -> PullOptions:
    """The engine's options from a gateway config and this command's arguments."""
    from shifter.engine.pull import PullOptions
    from shifter.engine.source import RegistryLocation

    image_format = args.format or config.default_image_format
    if args.cache is not None:
        cache_dir = args.cache
    elif args.config:
        cache_dir = Path(config.cache_directory)
    else:
        cache_dir = default_cache_dir()
    work_dir = Path(config.expand_directory) if args.config else None
    return PullOptions(
        cache_dir=cache_dir,
        platform=args.platform or config.default_platform,
        image_format=image_format,
        locations={
            name: RegistryLocation(url=str(location.url), ca_file=location.sslcacert)
            for name, location in config.locations.items()
        },
        default_location=config.default_image_location,
        credentials=parse_creds(args.creds),
        insecure=args.insecure,
        ca_file=args.ca,
        converter_options=config.converter_options_for(image_format),
        ownership=config.image_ownership,
        layer_concurrency=config.layer_download_concurrency,
        work_dir=work_dir,
        progress=_progress(),
    )


def default_pull_options(args: argparse.Namespace) -> PullOptions:
    """The engine's options without `--config`: `PullOptions`' own defaults, which are an
    empty imagemanager.json's (a unit test holds them equal), so the configuration model
    (pydantic, ~0.1 s of start-up) is not loaded for a one-off conversion."""
    from shifter.engine.pull import PullOptions

    given: dict[str, Any] = {}
    if args.platform:
        given["platform"] = args.platform
    if args.format:
        given["image_format"] = args.format
    return PullOptions(
        cache_dir=args.cache if args.cache is not None else default_cache_dir(),
        credentials=parse_creds(args.creds),
        insecure=args.insecure,
        ca_file=args.ca,
        progress=_progress(),
        **given,
    )


def _progress() -> PullProgress:
    from shifter.engine.progress import SilentProgress, TerminalProgress

    return TerminalProgress(sys.stderr) if sys.stderr.isatty() else SilentProgress()


def run(args: argparse.Namespace) -> int:
    from shifter.engine.pull import PullError, pull_and_convert

    if args.config:
        from shifter.gateway.config import load_gateway_config

        options = pull_options(load_gateway_config(args.config), args)
    else:
        options = default_pull_options(args)
    for directory in (args.dest_dir, options.work_dir):
        if directory is None:
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PullError(
                f"cannot create directory {directory}: {exc.strerror}",
                hint="choose a directory you can write to",
            ) from exc
    pulled = pull_and_convert(args.image, args.dest_dir, options=options)
    if sys.stderr.isatty():
        state = "already converted" if pulled.reused else "converted"
        print(f"{args.image}: {state}: {pulled.image_path}", file=sys.stderr)
    print(pulled.id, flush=True)
    return 0
