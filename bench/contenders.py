"""The contenders: one function per tool, each doing one measured round for one image.

All of them pull from the same local HTTPS registry and write gzip squashfs images to the
same disk:

- `floor`: `mksquashfs` of the already-flattened tree (extracted once, untimed): the cost of
  compression alone, what no pull-and-convert can beat.
- `charliecloud`: `ch-image pull` into a fresh storage directory, then `ch-convert` to
  squashfs; timed separately, reported as their sum. `--no-cache` keeps ch-image's git
  build cache out of the pull (its fastest configuration; with the cache a pull commits the
  whole tree to git). `--tls-no-verify`: the registry's certificate is self-signed.
- `ours`: `shifter-imagegw convert` with a fresh, empty layer cache (cold), then the same
  command again with that cache and destination (warm: the image is already there).
  `--ca` trusts the registry's certificate (our `--insecure` means plain http).

With a gzip level (`--gzip-level N`) every contender compresses at that level instead of
mksquashfs's default (9): the floor with `-Xcompression-level N`, ours through an
imagemanager.json whose ConverterOptions say so (`--config`), Charliecloud through a
`mksquashfs` wrapper that ch-convert finds first (`gzip_level_tools`).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.images import BenchImage
from bench.measure import Sample, measure
from shifter.errors import ShifterError
from shifter.proc import run

FLOOR = "floor"
CHARLIECLOUD = "charliecloud"
OURS_COLD = "ours-cold"
OURS_WARM = "ours-warm"
PULL, CONVERT = "pull", "convert"


@dataclass(frozen=True)
class Setup:
    """What every round needs: the registry, the environment, where to write."""

    netloc: str
    ca_file: Path
    env: Mapping[str, str]
    registry_pid: int
    trees: Mapping[str, Path]  # image key -> flattened tree, the floor's input
    ours: Path  # the shifter-imagegw command
    gzip_level: int | None = None  # None: mksquashfs's default (9)
    ours_config: Path | None = None  # imagemanager.json setting that level
    ch_convert: str | Path = "ch-convert"  # or the copy that runs the level's wrapper


def gzip_level_tools(
    level: int, directory: Path, *, mksquashfs: str, ch_convert: str
) -> tuple[Path, Path]:
    """What makes ours and Charliecloud compress at gzip `level`: an imagemanager.json for
    `shifter-imagegw convert --config`, and a `ch-convert` that runs mksquashfs with it.

    ch-convert puts its own directory first on PATH (`PATH=${ch_bin}:$PATH`, `ch_bin`
    being `dirname $0`), so a wrapper earlier on the caller's PATH is never found. A
    symlink to ch-convert in a directory of ours, next to the wrapper, makes that
    directory `ch_bin`; `../lib/charliecloud` there links to the real library, which
    ch-convert sources relative to `ch_bin`. The wrapper puts the options right after the
    source and destination: ch-convert ends mksquashfs's command line with `-e`, whose
    list of excluded paths must come last.
    """
    config = directory / "imagemanager.json"
    options = {"squashfs": ["-comp", "gzip", "-Xcompression-level", str(level)]}
    # ExpandDirectory: `convert --config` creates it; keep it in the run's scratch space.
    document = {"ConverterOptions": options, "ExpandDirectory": str(directory / "expand")}
    config.write_text(json.dumps(document, indent=1) + "\n")
    real = Path(ch_convert)
    bin_dir, lib_dir = directory / "charliecloud" / "bin", directory / "charliecloud" / "lib"
    bin_dir.mkdir(parents=True)
    lib_dir.mkdir()
    (lib_dir / "charliecloud").symlink_to(real.resolve().parent.parent / "lib" / "charliecloud")
    (bin_dir / "ch-convert").symlink_to(real)
    wrapper = bin_dir / "mksquashfs"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"# bench/convert.py --gzip-level {level}: ch-convert's mksquashfs at that level.\n"
        'src=$1 dest=$2\n'
        "shift 2\n"
        f'exec {mksquashfs} "$src" "$dest" -comp gzip -Xcompression-level {level} "$@"\n'
    )
    wrapper.chmod(0o755)
    return config, bin_dir / "ch-convert"


@dataclass(frozen=True)
class Outcome:
    """One contender's one round on one image."""

    sample: Sample
    image_size: int
    image_path: Path
    steps: Mapping[str, Sample] = field(default_factory=dict)
    note: str = ""


def ours_command() -> Path:
    """`shifter-imagegw` next to the running interpreter (the project's venv)."""
    command = Path(sys.executable).parent / "shifter-imagegw"
    if not command.exists():
        raise ShifterError(
            f"{command} does not exist: the conversion engine is not installed",
            hint="run scripts/install.sh, or scripts/bench.sh which runs it",
        )
    return command


def _measure(setup: Setup, argv: list[str | Path]) -> tuple[Sample, bytes]:
    return measure(argv, env=setup.env, skip_pids=(setup.registry_pid,))


def floor(setup: Setup, image: BenchImage, out: Path) -> Outcome:
    target = out / "floor.squashfs"
    argv: list[str | Path] = [
        "mksquashfs", setup.trees[image.key], target, "-noappend", "-no-xattrs", "-all-root",
        "-processors", "2", "-comp", "gzip", "-quiet", "-no-progress",
    ]
    if setup.gzip_level is not None:
        argv += ["-Xcompression-level", str(setup.gzip_level)]
    sample, _ = _measure(setup, argv)
    return Outcome(sample, target.stat().st_size, target)


def charliecloud(setup: Setup, image: BenchImage, out: Path) -> Outcome:
    storage = out / "ch-storage"
    target = out / "charliecloud.squashfs"
    name = f"bench-{image.key}"
    env = {**setup.env, "CH_IMAGE_STORAGE": str(storage)}
    pull, _ = measure(
        ["ch-image", "pull", "--no-cache", "--tls-no-verify", image.reference(setup.netloc),
         name],
        env=env,
        skip_pids=(setup.registry_pid,),
    )
    convert, _ = measure(
        [setup.ch_convert, "-i", "ch-image", "-o", "squash", name, target],
        env=env,
        skip_pids=(setup.registry_pid,),
    )
    total = Sample(
        pull.wall_s + convert.wall_s,
        pull.cpu_s + convert.cpu_s,
        max(pull.max_rss_kib, convert.max_rss_kib),
        max(pull.tree_rss_kib, convert.tree_rss_kib),
        pull.others_cpu_s + convert.others_cpu_s,
        pull.cpu_wait_s + convert.cpu_wait_s,
    )
    return Outcome(total, target.stat().st_size, target, {PULL: pull, CONVERT: convert})


def _ours_once(setup: Setup, image: BenchImage, cache: Path, dest: Path) -> Outcome:
    argv: list[str | Path] = [
        setup.ours, "convert", "--ca", setup.ca_file, "--cache", cache, "--format", "squashfs",
        image.reference(setup.netloc), dest,
    ]
    if setup.ours_config is not None:
        argv[2:2] = ["--config", setup.ours_config]
    sample, stdout = _measure(setup, argv)
    lines = stdout.decode(errors="replace").strip().splitlines()
    if not lines:
        raise ShifterError("shifter-imagegw convert printed no image id")
    target = dest / f"{lines[-1].strip()}.squashfs"
    return Outcome(sample, target.stat().st_size, target)


def ours(setup: Setup, image: BenchImage, out: Path) -> tuple[Outcome, Outcome]:
    """Cold (empty cache), then warm (same cache and destination)."""
    cache, dest = out / "ours-cache", out / "ours-images"
    cold = _ours_once(setup, image, cache, dest)
    built = cold.image_path.stat().st_mtime_ns
    warm = _ours_once(setup, image, cache, dest)
    if warm.image_path != cold.image_path or warm.image_path.stat().st_mtime_ns != built:
        warm = replace(warm, note="warning: the warm run rebuilt the image")
    return cold, warm


def entry_count(image_path: Path) -> int:
    """Paths in a squashfs image, the root not counted (`-d ""` lists them as `/etc`...)."""
    listing = run(["unsquashfs", "-no-progress", "-l", "-d", "", image_path]).stdout or b""
    return sum(1 for line in listing.splitlines() if line.startswith(b"/"))


def clear(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
