"""`shifter-slurm-hook MODE ...`: what the SPANK plugin (shifter_slurm.so) runs; not for
people. Every decision of the Slurm integration is made here (shifter.wlm).

  submit CONFIG IMAGE_GIVEN IMAGE VOLUME MODULE CCM SSHD   as the user, at sbatch/salloc/
      srun: check the options, pin the image, with SSHD=1 (enable_sshd) make the job's key
      pair if missing and pass its public key; print the job's NAME=VALUE lines. Exit 1 with one
      sentence and a hint on stderr: the submission fails.
  prolog CONFIG / epilog CONFIG   as root on every node (the plugin gives a fixed
      environment: SLURM_JOB_ID, SLURM_JOB_UID, SLURMD_NODENAME, SLURM_CONF, SPANK_SHIFTER_*).
      Lines on stdout go to slurmd's log.
  extern CONFIG   as root, from the job's extern step on every node (plugstack
      `extern_cgroup=1`; environment: SLURM_JOB_ID, SLURM_JOB_UID, SLURMD_NODENAME): moves
      the job's sshd and its sessions into the extern step's cgroups.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "shifter"


def _submit(args: list[str]) -> int:
    from shifter.errors import ShifterError
    from shifter.runtime.config.load import load_udiroot_config
    from shifter.wlm.interface import JobRequest
    from shifter.wlm.submit import pin_request

    if len(args) != 7:
        raise ShifterError("submit: expected CONFIG IMAGE_GIVEN IMAGE VOLUME MODULE CCM SSHD")
    config_file, given, image, volume, module, ccm, sshd = args
    request = JobRequest(image, volume, module, ccm == "1", given == "1")
    config = load_udiroot_config(config_file)
    gids = sorted({os.getgid(), *os.getgroups()})
    env = pin_request(request, config, os.environ, uid=os.getuid(), gids=gids,
                      sshd=sshd == "1")
    for name, value in env.items():
        if "\n" in value:
            raise ShifterError(f"{name}: a line break is not allowed")
        print(f"{name}={value}")
    return 0


def _node(mode: str, args: list[str]) -> int:
    from shifter.errors import ShifterError
    from shifter.runtime.config.load import load_udiroot_config
    from shifter.wlm import nodes
    from shifter.wlm.slurm import Slurm

    if len(args) != 1 or os.geteuid() != 0:
        raise ShifterError(f"{mode}: run by the Slurm plugin as root, with CONFIG")
    environ = dict(os.environ)
    config = load_udiroot_config(args[0])
    if mode == "prolog":
        print(nodes.prolog(config, environ, Slurm(environ)))
    elif mode == "extern":
        from shifter.wlm.extern import extern_step

        print(extern_step(config.udi_mount, environ))
    else:
        print(nodes.epilog(config, environ))
    return 0


def _run(args: list[str]) -> int:
    from shifter.errors import ShifterError

    if args and args[0] == "submit":
        return _submit(args[1:])
    if args and args[0] in ("prolog", "epilog", "extern"):
        return _node(args[0], args[1:])
    raise ShifterError(
        "usage: shifter-slurm-hook submit|prolog|epilog|extern ...",
        hint="the Slurm plugin runs this command; see docs/slurm.md",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(f"Usage: shifter-slurm-hook submit|prolog|epilog|extern ...\n\n{__doc__}")
        return 0
    return common.run_command(PROG, lambda: _run(args), debug=False)


if __name__ == "__main__":
    sys.exit(main())
