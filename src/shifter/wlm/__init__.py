"""Workload-manager integration: what a batch system's hooks decide, in Python.

`interface` is what a batch system must provide (the job's allocation); `slurm` is Slurm's
(scontrol); `submit` checks a job's image, volumes and modules when it is submitted and pins
the image to its id; `nodes` prepares and clears each node of an exclusive job (setupRoot,
unsetupRoot) from the prolog and epilog; `plugin` builds the SPANK forwarder and prints the
configuration lines a site needs. The C in `shifter_slurm.c` only forwards to these.
"""
