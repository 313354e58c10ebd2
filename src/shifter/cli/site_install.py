"""`shifter-site-install`: finish installing this package on a site's machine (docs/install.md).

After `pip install` into a prefix (say `/opt/shifter`), run as root:

    /opt/shifter/bin/shifter-site-install [--gateway-user shifter-gw] [--no-gateway] ...

and it, each step said on stdout (`--dry-run`: only said):

1. writes the `-I -S` launchers of `shifter`, `shifterimg`, `setupRoot` and `unsetupRoot`
   in this installation's `bin` (isolated: the caller's PYTHONPATH never reaches a root
   command; and faster, see docs/performance.md);
2. links every shifter command into `--bin-dir` (default /usr/local/bin), and `--shebang`
   (default /usr/bin/shifter) to the `shifter` launcher, for `#!/usr/bin/shifter /bin/bash`
   batch scripts;
3. copies the example configurations into `--config-dir` (default /etc/shifter) as
   `*.example`, never over a site's own `udiRoot.conf` or `imagemanager.json`;
4. creates the runtime's directories (udiMount, loopMount: from udiRoot.conf when it exists),
   builds the Slurm SPANK plugin against this node's Slurm when its headers are installed
   (`--slurm`; docs/slurm.md), and copies this node's OpenSSH into the udiImage for the
   job's sshd when it has one (`--udiimage-sshd`; docs/sshd.md), and the systemd unit
   `shifter-mountd.service` of the node's image mount helper (docs/mountd.md);
5. unless `--no-gateway`: creates the gateway's system account and its private directories
   (the metadata store's, CacheDirectory, ExpandDirectory, the log's: from
   imagemanager.json when it exists), and writes the systemd units `shifter-imagegw.service`
   (and `shifter-imagegw-gunicorn.service`) into `--systemd-dir`, with the paths it may
   write (ReadWritePaths) including each local platform's imageDir.

It enables or starts nothing. `--uninstall` removes what steps 1, 2 and 5 wrote (links,
units) and says what it leaves: configurations, directories with data, the account.
Running it again writes the launchers and the plugin again (after an upgrade of the package
or of Slurm they must be) and changes nothing else that is already right.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path

from shifter import proc
from shifter.cli import common
from shifter.cli.launcher import COMMANDS, shebang_problem, write_launcher
from shifter.data import (
    GATEWAY_UNIT,
    GUNICORN_UNIT,
    IMAGEMANAGER_EXAMPLE,
    MOUNTD_UNIT,
    UDIROOT_EXAMPLE,
    data_path,
)
from shifter.errors import ShifterError

PROG = "shifter-site-install"
# Every command of the package a user or admin runs (linked into --bin-dir).
LINKED = ("shifter", "shifterimg", "setupRoot", "unsetupRoot", "shifter-imagegw",
          "shifter-site-install", "shifter-slurm-conf", "shifter-prep-libs", "shifter-udiimage")
HOST_SSHD = "/usr/sbin/sshd"
DEFAULT_GATEWAY_DIRS = ("/var/lib/shifter", "/var/cache/shifter/imagegw",
                        "/var/tmp/shifter/imagegw", "/var/log/shifter")
UNIT_MARK = "shifter-site-install"  # in the first line of every unit it writes


class SiteInstallError(ShifterError):
    """A step of the site installation cannot be done as asked."""


class Steps:
    """Runs (or, dry, only reports) each change, one line per change."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run

    def say(self, text: str) -> None:
        print(("would " if self.dry_run else "") + text)

    def directory(self, path: str, mode: int, owner: tuple[int, int] = (0, 0)) -> None:
        info = _stat(path)
        if info is not None and (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (
                mode, *owner):
            return
        self.say(f"{'create' if info is None else 'set'} directory {path} "
                 f"(mode {mode:04o}, owner {_name(owner)})")
        if not self.dry_run:
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chown(path, *owner)
            os.chmod(path, mode)

    def link(self, path: str, target: str) -> None:
        if os.path.islink(path) and os.readlink(path) == target:
            return
        if os.path.lexists(path) and not _ours(path):
            raise SiteInstallError(
                f"{path} exists and is not a link this installation made",
                hint="move it away, or choose another place with --bin-dir or --shebang")
        self.say(f"link {path} -> {target}")
        if not self.dry_run:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            temporary = f"{path}.{os.getpid()}.tmp"
            os.symlink(target, temporary)
            os.replace(temporary, path)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        try:
            if Path(path).read_text() == text:
                return
        except OSError:
            pass
        self.say(f"write {path}")
        if not self.dry_run:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            temporary = f"{path}.{os.getpid()}.tmp"
            Path(temporary).write_text(text)
            os.chmod(temporary, mode)
            os.replace(temporary, path)

    def remove(self, path: str) -> None:
        if not os.path.lexists(path):
            return
        self.say(f"remove {path}")
        if not self.dry_run:
            os.unlink(path)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _name(owner: tuple[int, int]) -> str:
    try:
        return f"{pwd.getpwuid(owner[0]).pw_name}:{grp.getgrgid(owner[1]).gr_name}"
    except KeyError:
        return f"{owner[0]}:{owner[1]}"


def _bin() -> str:
    """This installation's bin directory (where pip put the console scripts), also when
    this command was started through one of the links it made."""
    return os.path.abspath(sysconfig.get_path("scripts"))


def _ours(path: str) -> bool:
    """A link into this installation's bin (or one of its launchers' names)."""
    if not os.path.islink(path):
        return False
    return os.path.dirname(os.readlink(path)) == _bin()


def install(args: argparse.Namespace) -> None:
    steps = Steps(args.dry_run)
    bin_dir = _bin()
    python = os.path.abspath(sys.executable)
    problem = shebang_problem(python)
    if problem is not None:
        raise SiteInstallError(f"cannot write the launchers: {problem}",
                               hint="install into a prefix whose path has no spaces")
    import shifter

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(shifter.__file__)))
    for name, module in COMMANDS.items():
        target = os.path.join(bin_dir, name)
        steps.say(f"write the -I -S launcher {target}")
        if not args.dry_run:
            write_launcher(target, python, package_parent, sysconfig.get_path("purelib"),
                           module)
    if args.bin_dir != "none":
        for name in LINKED:
            if os.path.exists(os.path.join(bin_dir, name)):
                steps.link(os.path.join(args.bin_dir, name), os.path.join(bin_dir, name))
    if args.shebang != "none":
        steps.link(args.shebang, os.path.join(bin_dir, "shifter"))

    steps.directory(args.config_dir, 0o755)
    for example in (UDIROOT_EXAMPLE, IMAGEMANAGER_EXAMPLE):
        steps.write(os.path.join(args.config_dir, example), Path(data_path(example)).read_text())
    for directory in _runtime_dirs(os.path.join(args.config_dir, "udiRoot.conf")):
        steps.directory(directory, 0o755)
    _slurm_plugin(steps, args)
    _udi_image_sshd(steps, args)
    if args.systemd_dir != "none":
        text = Path(data_path(MOUNTD_UNIT)).read_text()
        text = text.replace("@UDIROOT@", os.path.join(args.config_dir, "udiRoot.conf"))
        first, _, rest = text.replace("@BIN@", bin_dir).partition("\n")
        unit = os.path.join(args.systemd_dir, MOUNTD_UNIT)
        steps.write(unit, f"{first} [{UNIT_MARK}]\n{rest}")

    if args.no_gateway:
        return
    owner = _gateway_account(steps, args.gateway_user)
    gateway_config = os.path.join(args.config_dir, "imagemanager.json")
    private, image_dirs = _gateway_dirs(gateway_config)
    for directory in private:
        steps.directory(directory, 0o750 if directory.endswith("/log/shifter") else 0o700,
                        owner)
    if args.systemd_dir != "none":
        values = {
            "@USER@": args.gateway_user, "@GROUP@": _group_name(owner[1], args.gateway_user),
            "@CONFIG@": gateway_config, "@BIN@": bin_dir, "@HOST@": args.host,
            "@PORT@": str(args.port), "@WORKERS@": str(args.workers),
            "@WRITABLE@": " ".join(f"-{path}" for path in (*private, *image_dirs)),
        }
        for unit in (GATEWAY_UNIT, GUNICORN_UNIT):
            text = Path(data_path(unit)).read_text()
            for key, value in values.items():
                text = text.replace(key, value)
            first, _, rest = text.partition("\n")
            steps.write(os.path.join(args.systemd_dir, unit),
                        f"{first} [{UNIT_MARK}]\n{rest}")
        print(f"then: systemctl daemon-reload && systemctl enable --now {GATEWAY_UNIT}")


def _slurm_plugin(steps: Steps, args: argparse.Namespace) -> None:
    """Compile the SPANK plugin against this node's Slurm (Slurm loads only plugins built
    for its own version) when Slurm's headers are here, or `--slurm` demands it."""
    from shifter.wlm import plugin

    if args.slurm == "no" or (args.slurm == "auto" and not os.path.isfile(plugin.SPANK_HEADER)):
        return
    steps.say(f"build the Slurm plugin {plugin.plugin_path()}")
    if not steps.dry_run:
        plugin.build()
    config = os.path.join(args.config_dir, "udiRoot.conf")
    print("then, in Slurm's plugstack.conf: "
          + " ".join(plugin.plugstack_lines(config if os.path.exists(config) else None)))


def _udi_image_sshd(steps: Steps, args: argparse.Namespace) -> None:
    """The udiImage's OpenSSH (the job's sshd, docs/sshd.md), from this node's own, when
    it has one or `--udiimage-sshd` demands it."""
    if args.udiimage_sshd == "no" or (args.udiimage_sshd == "auto"
                                      and not os.path.isfile(HOST_SSHD)):
        return
    from shifter.libprep.sshbundle import build
    from shifter.runtime.rootfs.udiimage import installed_udi_image

    target = installed_udi_image()
    steps.say(f"copy the host's OpenSSH into the udiImage {target}")
    if not steps.dry_run:
        build(target)


def _group_name(gid: int, fallback: str) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return fallback


def _runtime_dirs(config_path: str) -> list[str]:
    """udiMount and loopMount of the site's udiRoot.conf, or the defaults."""
    if os.path.exists(config_path):
        from shifter.runtime.config.load import load_udiroot_config

        config = load_udiroot_config(config_path)
        return [config.udi_mount, config.loop_mount]
    return ["/var/udiMount", "/var/udiLoopMount"]


def _gateway_account(steps: Steps, name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        steps.say(f"create the system account {name} (home /var/lib/shifter, no login)")
        if steps.dry_run:
            return (0, 0)
        proc.run(["useradd", "--system", "--user-group", "--home-dir", "/var/lib/shifter",
                  "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _gateway_dirs(config_path: str) -> tuple[list[str], list[str]]:
    """The gateway's private directories and the local platforms' imageDirs, from its
    configuration when it exists."""
    if not os.path.exists(config_path):
        return list(DEFAULT_GATEWAY_DIRS), []
    from shifter.gateway.config import load_gateway_config

    config = load_gateway_config(config_path)
    private = [config.cache_directory, config.expand_directory]
    store = config.metadata_store_url
    if store.startswith("sqlite:///"):
        private.append(os.path.dirname(store.removeprefix("sqlite:///")))
    if config.log_file:
        private.append(os.path.dirname(config.log_file))
    images = [platform.image_dir for platform in config.platforms.values()
              if platform.accesstype == "local"]
    return _unique(private), _unique(images)


def _unique(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(os.path.normpath(path) for path in paths))


def uninstall(args: argparse.Namespace) -> None:
    steps = Steps(args.dry_run)
    if args.bin_dir != "none":
        for name in LINKED:
            path = os.path.join(args.bin_dir, name)
            if _ours(path):
                steps.remove(path)
    if args.shebang != "none" and _ours(args.shebang):
        steps.remove(args.shebang)
    if args.systemd_dir != "none":
        for unit in (GATEWAY_UNIT, GUNICORN_UNIT, MOUNTD_UNIT):
            path = os.path.join(args.systemd_dir, unit)
            try:
                first = Path(path).read_text().partition("\n")[0]
            except OSError:
                continue
            if UNIT_MARK in first:
                steps.remove(path)
    print(f"left in place: {args.config_dir} (the site's configuration), the gateway's "
          f"directories and account {args.gateway_user}, the runtime's directories; "
          "`pip uninstall shifter-hpc` removes the package")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Finish a site installation of shifter: launchers, links, "
        "example configurations, directories, the gateway's account and systemd units.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--bin-dir", default="/usr/local/bin", metavar="DIR",
                        help="where to link the commands ('none': nowhere; default "
                        "/usr/local/bin)")
    parser.add_argument("--shebang", default="/usr/bin/shifter", metavar="PATH",
                        help="a link to `shifter` for #! batch scripts ('none': none; default "
                        "/usr/bin/shifter)")
    parser.add_argument("--config-dir", default="/etc/shifter", metavar="DIR",
                        help="where the configurations live (default /etc/shifter)")
    parser.add_argument("--gateway-user", default="shifter-gw", metavar="NAME",
                        help="the gateway's system account (default shifter-gw; created if "
                        "missing)")
    parser.add_argument("--no-gateway", action="store_true",
                        help="a compute or login node: no gateway account, directories, units")
    parser.add_argument("--systemd-dir", default="/etc/systemd/system", metavar="DIR",
                        help="where to write the units ('none': none)")
    parser.add_argument("--host", default="0.0.0.0", help="the gateway units' listen address")
    parser.add_argument("--port", type=int, default=5000, help="the gateway units' port")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="server processes in the gateway units (default 1)")
    parser.add_argument("--slurm", choices=("auto", "yes", "no"), default="auto",
                        help="build the Slurm SPANK plugin: auto (when Slurm's headers are "
                        "installed), yes, no")
    parser.add_argument("--udiimage-sshd", choices=("auto", "yes", "no"), default="auto",
                        help="copy this node's OpenSSH into the udiImage for the job's sshd: "
                        "auto (when /usr/sbin/sshd exists), yes, no")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove the links and units this command wrote")
    parser.add_argument("--dry-run", action="store_true", help="only say what it would do")
    parser.add_argument("--debug", action="store_true", help="a traceback on errors")
    return parser


def _version() -> str:
    from shifter import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        if os.geteuid() != 0 and not args.dry_run:
            raise SiteInstallError("must run as root",
                                   hint="run it with sudo, or look first with --dry-run")
        (uninstall if args.uninstall else install)(args)

    return common.run_command(PROG, run, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())

