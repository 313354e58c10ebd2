"""`shifter-imagegw prune`: shrink the gateway's layer cache to its size limit now.

Least recently used layers go first; layers a running pull uses are kept, whatever their
age, as are partial downloads (a pull may resume them; the gateway removes those after a
day). The limit is CacheSizeLimit of the configuration (`--config`, else GWCONFIG, else
/etc/shifter/imagemanager.json), or `--limit SIZE` (`0` empties the cache of everything not
in use). `--dry-run` only says what would go. The gateway prunes after every pull by
itself; this is for admins who need space now, or a smaller cache.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="shrink the layer cache to its size limit",
        description="Remove the least recently used layers from the gateway's layer cache "
        "until it is within its size limit; layers running pulls use are kept.",
    )
    parser.add_argument("--config", metavar="FILE", help="imagemanager.json (default: "
                        "GWCONFIG, else /etc/shifter/imagemanager.json)")
    parser.add_argument("--limit", metavar="SIZE",
                        help='bytes, or with K, M, G, T such as "20G" (default: CacheSizeLimit)')
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    parser.set_defaults(handler=run)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def run(args: argparse.Namespace) -> int:
    from shifter.errors import ConfigError
    from shifter.gateway.config import load_gateway_config
    from shifter.gateway.config_values import byte_size
    from shifter.registry.blobcache import BlobCache

    config = load_gateway_config(args.config)
    limit = config.cache_size_limit
    if args.limit is not None:
        try:
            limit = byte_size(args.limit)
        except ValueError as error:
            raise ConfigError(f"--limit {error}") from None
    if limit is None:
        print(f"the layer cache {config.cache_directory} has no size limit (CacheSizeLimit); "
              "give one with --limit")
        return 0
    result = BlobCache(config.cache_directory).prune(limit, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(result.removed)} layer(s), {_mib(result.bytes_before - result.bytes_after)}"
          f"; the layer cache {config.cache_directory} "
          f"{'would hold' if args.dry_run else 'holds'} {_mib(result.bytes_after)} "
          f"(limit {_mib(limit)})")
    for hex_digest, size in result.removed:
        print(f"  sha256:{hex_digest}  {_mib(size)}")
    if result.in_use:
        print(f"kept {result.in_use} layer(s) that running pulls use")
    return 0
