#!/usr/bin/env bash
# Install everything shifter needs on a Debian 12 machine, as a site install would.
# Idempotent: a second run only checks. Run as root.
#
#   scripts/install.sh            system packages, ./.venv, the package, site directories
#   scripts/install.sh --bench    also the tools the benchmarks compare against
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (it installs Debian packages and creates /var/udiMount)" >&2
    exit 1
fi

# Everything the code, the tests and the demo call: registry, munge, squashfs tools,
# FUSE, sshd, PostgreSQL, ACL tools, mkfs for ext4/xfs/cramfs; MPICH (mpicc, hydra's
# mpiexec) and patchelf for the MPI modules (shifter-prep-libs), gcc for the GPU tests' stubs;
# systemd for systemd-analyze, which checks the gateway's units (nothing is started by it).
packages=(
    python3 python3-venv ca-certificates openssl
    docker-registry munge libmunge2 busybox-static
    squashfs-tools squashfs-tools-ng squashfuse fuse3
    openssh-server openssh-client rsync acl
    postgresql e2fsprogs xfsprogs util-linux-extra
    procps iproute2 kmod
    slurmctld slurmd slurm-client libslurm-dev slurm-wlm-basic-plugins-dev gcc libc6-dev
    mpich libmpich-dev patchelf
    systemd
)
if [ "${1:-}" = "--bench" ]; then
    packages+=(charliecloud podman debootstrap hyperfine time wrk)
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d may forbid starting services: the tests start their own instances.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The packaged daemons are not used: tests and the demo start private instances on free
# ports. Stop the system ones if the package started them, so they hold no ports.
for svc in docker-registry slurmctld slurmd; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
    fi
done

# Debian's default mode for /dev/fuse is 0666 (udev sets it); machines without udev leave
# it 0600, and then users cannot mount images with squashfuse.
if [ -c /dev/fuse ]; then
    chmod 0666 /dev/fuse
fi

# The virtual environment is built from Debian's Python so that ordinary users can run
# `shifter` (a pyenv interpreter under /root is not readable by them).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.base_prefix == "/usr"' 2>/dev/null; then
    rm -rf .venv
    /usr/bin/python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi

# Ordinary users cannot write bytecode next to the sources, and compiling on every launch
# costs more than the launch itself: compile once here.
.venv/bin/python -m compileall -q -j 0 src/shifter >/dev/null

# `shifter` is latency-critical: pip's console script starts Python with `site` (every .pth
# file); this one starts it with -I -S (docs/performance.md, "Launch-path imports").
# setupRoot and unsetupRoot run as root in every job's prolog and epilog: isolated, the
# caller's PYTHONPATH and user site-packages cannot change what they import.
# shifterimg: workflow tools call `shifterimg lookup` in loops.
.venv/bin/python -m shifter.cli.launcher .venv/bin/shifter .venv/bin/setupRoot .venv/bin/unsetupRoot \
    .venv/bin/shifterimg .venv/bin/shifter-slurm-hook .venv/bin/shifter-mountd \
    || echo "install.sh: warning: shifter, setupRoot, unsetupRoot, shifterimg, shifter-slurm-hook and shifter-mountd keep pip's console scripts" >&2

# The Slurm SPANK plugin, compiled here against the installed Slurm (Slurm loads only
# plugins built for its own version) into .venv/lib/shifter/shifter_slurm.so: an absolute
# path outside any build directory, which `shifter-slurm-conf plugstack` prints.
.venv/bin/shifter-slurm-conf build >/dev/null

# The udiImage's OpenSSH for the job's sshd (docs/sshd.md): the host's sshd, ssh and
# ssh-keygen with their libraries and their own loader, in .venv/lib/shifter/udiImage.
.venv/bin/shifter-udiimage >/dev/null

# Site directories, as the seed's installation guide lays them out.
install -d -m 0755 /var/udiMount /var/udiLoopMount /etc/shifter

# Accounts that the demo and the tests run containers as (shifter never runs a container
# process as root). Fixed names; uids chosen by the system.
for user in shifterdemo shiftertest1 shiftertest2; do
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
done
# The gateway's remote-platform tests log in to a private sshd as this account. Its
# password is '*' (no password, not locked): sshd without PAM refuses '!'-locked accounts.
id shiftergw >/dev/null 2>&1 || useradd --system --create-home --shell /bin/sh --password '*' shiftergw
# sshd's privilege-separation directory (tmpfs /run loses it at boot; systemd recreates it).
install -d -m 0755 /run/sshd
getent group shiftertestgrp >/dev/null || groupadd shiftertestgrp
id -nG shiftertest1 | grep -qw shiftertestgrp || usermod -aG shiftertestgrp shiftertest1

# Users run `shifter` from this venv: every directory above it must be searchable by them.
if ! runuser -u nobody -- test -x "$here/.venv/bin/python"; then
    echo "install.sh: warning: other users cannot reach $here/.venv (a parent directory is" \
        "not searchable); tests that run commands as ordinary users will fail" >&2
fi

echo "install.sh: ready ($here/.venv)"
