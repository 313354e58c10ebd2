#!/usr/bin/env bash
# Install the tools the benchmarks compare against, then run the benchmarks. Run as root.
#
#   scripts/bench.sh                    every benchmark, default settings
#   scripts/bench.sh convert [ARGS]     image conversion only (bench/convert.py): best of 3,
#                                       about 7 minutes; the first run also debootstraps
#                                       Debian (about a minute). ARGS e.g. --quick, --help
#   scripts/bench.sh launch [ARGS]      launch latency only (bench/launch.py)
#   scripts/bench.sh lookup [ARGS]      docker: launches and shifterimg lookup/images against
#                                       a local gateway (bench/lookup.py): about a minute
#   scripts/bench.sh gateway [ARGS]     image gateway lookups/s and pull latency with munge
#                                       credentials, SQLite and PostgreSQL, 1 and 2 server
#                                       processes (bench/gateway.py): about 6 minutes
#   scripts/bench.sh mpi [ARGS]         MPI ping-pong/allreduce, container vs host, one node
#                                       (bench/mpi.py, --user NAME): under a minute
#   scripts/bench.sh mpi_nodes [ARGS]   the same across a private Slurm's nodes
#                                       (bench/mpi_nodes.py): about a minute
#   scripts/bench.sh ssh [ARGS]         ssh between a job's nodes, the job's sshd in the
#                                       container vs a host sshd (bench/ssh.py): ~30 s
#   scripts/bench.sh modules [ARGS]     the launch cost of the mpich and GPU modules
#                                       (bench/modules.py): under a minute
#   scripts/bench.sh sharedns [ARGS]    the launch cost of sharing the user namespace of
#                                       private containers (bench/sharedns.py): a minute
#
# Results go to stdout as Markdown tables; docs/performance.md records them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
if [ "$(id -u)" -ne 0 ]; then
    echo "bench.sh: run as root (it installs Debian packages, runs debootstrap, mounts)" >&2
    exit 1
fi
benchmarks=(convert launch lookup gateway slurm mpi mpi_nodes ssh modules sharedns)  # convert first: it caches the Debian tree launch uses
if [ "$#" -gt 0 ]; then
    case "$1" in
        convert|launch|lookup|gateway|slurm|mpi|mpi_nodes|ssh|modules|sharedns) benchmarks=("$1"); shift ;;
        *) echo "bench.sh: unknown benchmark '$1' (convert, launch, lookup, gateway, slurm, mpi, mpi_nodes, ssh, modules or sharedns)" >&2
           exit 2 ;;
    esac
fi
bash scripts/install.sh --bench
for name in "${benchmarks[@]}"; do
    .venv/bin/python -m "bench.$name" "$@"
done
