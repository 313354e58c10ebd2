"""`shifter-imagegw serve`: run the image gateway's REST API and its workers.

The configuration is `--config`, else GWCONFIG, else /etc/shifter/imagemanager.json, and
must name at least one platform. The API listens on `--host` (default 0.0.0.0) and
`--port` (default 5000, the original's). `--workers N` runs N server processes (default 1),
each with WorkerThreads worker threads; all coordinate through the metadata store. Service
settings (leases, request limits) come from SHIFTER_IMAGEGW_* variables (docs/gateway.md).

With `--workers N` above 1 the listening socket is made here, with IPPROTO_TCP, and handed
to uvicorn's process supervisor: uvicorn's own makes it with protocol 0, and asyncio then
leaves TCP_NODELAY off on every accepted connection, so each keep-alive reply waited
~40 ms for the client's delayed ACK.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import socket
from typing import Any

DEFAULT_PORT = 5000
DEFAULT_HOST = "0.0.0.0"
# Bounds on idle and slow connections; request bodies are bounded by the app itself.
KEEP_ALIVE_S = 5
GRACEFUL_S = 30


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the image gateway (REST API and pull workers)",
        description="Serve the image gateway's REST API and run its pull workers.",
    )
    parser.add_argument("--config", metavar="FILE", help="imagemanager.json (default: "
                        "GWCONFIG, else /etc/shifter/imagemanager.json)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="server processes, each with WorkerThreads pull threads (default 1)")
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="debug logging, and a traceback on errors",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from shifter.errors import ConfigError
    from shifter.gateway.config import gateway_config_path, load_gateway_config
    from shifter.gateway.logsetup import uvicorn_log_config
    from shifter.gateway.settings import ServiceSettings

    config = load_gateway_config(args.config)
    if not config.platforms:
        raise ConfigError(
            "names no Platforms: the gateway would have no system to serve",
            source=config.source,
            key="Platforms",
            hint='add one, e.g. "Platforms": {"mycluster": {"accesstype": "local", '
            '"local": {"imageDir": "/images"}}}',
        )
    ServiceSettings.from_environ()  # refuse bad SHIFTER_IMAGEGW_* values before starting
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    level = "debug" if getattr(args, "debug", False) else config.log_level
    # Every server process loads the same file: pass it on by GWCONFIG.
    os.environ["GWCONFIG"] = os.path.abspath(gateway_config_path(args.config)[0])
    logging.getLogger(__name__).info("serving on %s:%d", args.host, args.port)
    config_options: dict[str, Any] = {
        "factory": True,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_config": uvicorn_log_config(level, log_file=config.log_file,
                                         log_format=config.log_format),
        "timeout_keep_alive": KEEP_ALIVE_S,
        "timeout_graceful_shutdown": GRACEFUL_S,
        "proxy_headers": False,
        "server_header": False,
    }
    if args.workers == 1:
        uvicorn.run("shifter.gateway.app:create_app_from_env", **config_options)
    else:
        _serve_processes(uvicorn.Config("shifter.gateway.app:create_app_from_env",
                                        **config_options))
    return 0


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket made with IPPROTO_TCP, so that asyncio sets TCP_NODELAY on the
    connections it accepts (it checks the listening socket's protocol)."""
    from shifter.errors import ShifterError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ShifterError(f"cannot listen on {host}:{port}: {error.strerror}",
                           hint="choose another --host or --port") from None
    sock.set_inheritable(True)
    return sock


def _serve_processes(config: Any) -> None:
    """uvicorn.run's multi-process path, with our listening socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    sock = listening_socket(config.host, config.port)
    options: dict[str, Any] = {"sockets": [sock]}
    if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn
        options["target"] = uvicorn.Server(config).run
    try:
        Multiprocess(config, **options).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
