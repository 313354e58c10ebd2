"""The mpich module's userhook (`--mpich-abi-hook`): `bin/init.sh` in the module tree, run
by `/bin/sh` inside the container as the user, before the command.

It can only use the shell (an image may hold no other tool) and sees only the container:
it looks for the image's MPI library where images keep them. An MPICH-ABI library
(soname `libmpi.so.12` or `libmpich.so.12`: MPICH, Intel MPI, Cray MPICH, MVAPICH) is
replaced by the site's through LD_LIBRARY_PATH; any other (Open MPI's `libmpi.so.40`)
would be loaded next to it and fail in obscure ways, so the launch stops with a sentence
saying so. An image without MPI is left alone.

The hook carries `# shifter: remember-success` (runtime/site/hooks.py): its verdict depends only
on the container's files, so `shifter` remembers a success per image and skips the shell
on the next launches of that image (a launch pays the check once per node and image).
"""

from __future__ import annotations

import os

HOOK_PATH = "bin/init.sh"
SCRIPT = r"""#!/bin/sh
# shifter mpich module userhook (written by shifter-prep-libs --mpich-abi-hook).
# The site's MPICH-ABI library replaces the image's only if the image's follows the
# MPICH ABI too (soname libmpi.so.12 / libmpich.so.12).
# The verdict depends only on the container's files: shifter may remember a success per
# image (and volumes, modules) and this text, and skip the check next time.
# shifter: remember-success
other=""
for dir in /lib64 /usr/lib64 /lib /usr/lib /lib/*-linux-gnu /usr/lib/*-linux-gnu \
           /usr/local/lib /usr/local/lib64 /opt/*/lib /opt/*/lib64; do
    # One pattern, so each directory is read once (through FUSE, for a squashfs image).
    for lib in "$dir"/libmpi*.so.*; do
        case "${lib##*/}" in
            libmpi.so.12 | libmpi.so.12.* | libmpich.so.12 | libmpich.so.12.*) exit 0 ;;
            libmpi.so.* | libmpich.so.*) [ -e "$lib" ] && other="$lib" ;;
        esac
    done
done
if [ -n "$other" ]; then
    echo "the image's MPI library $other does not follow the MPICH ABI" \
         "(libmpi.so.12), so the site's mpich module cannot replace it;" \
         "run shifter with --module=none to use the image's own MPI" >&2
    exit 1
fi
exit 0
"""


def write_hook(target: str) -> tuple[str, bool]:
    """Write the hook under `target`; (its path, whether it changed)."""
    path = os.path.join(target, HOOK_PATH)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    try:
        with open(path) as file:
            if file.read() == SCRIPT:
                return path, False
    except FileNotFoundError:
        pass
    temp = path + ".shifter-prep"
    with open(temp, "w") as file:
        file.write(SCRIPT)
    os.chmod(temp, 0o755)
    os.replace(temp, path)
    return path, True
