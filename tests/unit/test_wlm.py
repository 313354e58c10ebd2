"""shifter.wlm's pure parts: scontrol's job line, the allocation and its hostsfile spec,
the per-node records' names, and the prolog's re-check of what came from the job."""

from __future__ import annotations

import errno
import pwd
from pathlib import Path

import pytest

from shifter.errors import ShifterError
from shifter.runtime.config.load import parse_udiroot_config
from shifter.wlm.interface import Allocation
from shifter.wlm.nodes import NodeError, setup_argv
from shifter.wlm.slurm import SlurmError, allocation_from, job_fields
from shifter.wlm.state import JobRecords

JOB_LINE = (
    "JobId=17 JobName=job.sh UserId=alice(1001) GroupId=alice(1001) MCS_label=N/A "
    "Priority=1 Nice=0 Account=(null) QOS=(null) JobState=CONFIGURING Reason=None "
    "NumNodes=3 NumCPUs=6 NumTasks=3 CPUs/Task=1 NodeList=shn[1-3] OverSubscribe=NO "
    "Command=/home/alice/my job.sh WorkDir=/home/alice"
)
CONFIG = (
    "udiMount=/var/udiMount\nloopMount=/var/udiLoopMount\nimagePath=/images\n"
    "rootfsType=tmpfs\npopulateEtcDynamically=1\n"
)
IMAGE_ID = "4a2f9f9d7c878d53959b2b9d0b68b2977b77bc16872ce77e51b8739264995a9f"


def test_an_exclusive_job_and_its_hostsfile_spec() -> None:
    fields = job_fields(JOB_LINE)
    assert fields["NodeList"] == "shn[1-3]" and fields["Command"] == "/home/alice/my"
    allocation = allocation_from("17", fields, ("shn1", "shn2", "shn3"))
    assert allocation == Allocation("17", 1001, ("shn1", "shn2", "shn3"), 6, shared=False)
    assert allocation.nodespec() == "shn1/2 shn2/2 shn3/2"


@pytest.mark.parametrize("value", ["OK", "YES", "USER", "MCS"])
def test_every_other_oversubscribe_value_is_a_shared_job(value: str) -> None:
    fields = job_fields(JOB_LINE.replace("OverSubscribe=NO", f"OverSubscribe={value}"))
    assert allocation_from("17", fields, ("shn1",)).shared


def test_fewer_cpus_than_nodes_still_gives_one_task_per_node() -> None:
    assert Allocation("1", 5, ("a", "b"), 1, shared=False).nodespec() == "a/1 b/1"


def test_a_job_line_without_user_is_an_error() -> None:
    with pytest.raises(SlurmError, match="no UserId or NumCPUs"):
        allocation_from("17", job_fields("JobId=17 NumCPUs=2"), ("shn1",))


@pytest.mark.parametrize(("node", "job"), [("../etc", "1"), ("", "1"), ("n1", "1;x"), ("n1", "")])
def test_records_refuse_names_that_are_not_a_node_or_a_job(node: str, job: str) -> None:
    with pytest.raises(ShifterError, match="unusable node name"):
        JobRecords(node, job)


def _job_env(**values: str) -> dict[str, str]:
    env = {"SPANK_SHIFTER_IMAGETYPE": "id", "SPANK_SHIFTER_IMAGE": IMAGE_ID}
    env.update(values)
    return env


def test_the_prolog_builds_setuproot_arguments_from_the_checked_job_values() -> None:
    config = parse_udiroot_config(CONFIG, "udiRoot.conf")
    nobody = pwd.getpwnam("nobody")
    env = _job_env(SPANK_SHIFTER_VOLUME="/tmp/a:/a;/tmp/b:/b:ro")
    argv = setup_argv(config, env, nobody.pw_uid, "n1/2 n2/2")
    assert argv[1:] == [
        "-U", str(nobody.pw_uid), "-G", str(nobody.pw_gid), "-u", "nobody",
        "-N", "n1/2 n2/2", "-v", "/tmp/a:/a", "-v", "/tmp/b:/b:ro", "--", "id", IMAGE_ID,
    ]  # fmt: skip
    assert argv[0].endswith("/setupRoot")


@pytest.mark.parametrize(
    ("values", "phrase"),
    [
        ({"SPANK_SHIFTER_IMAGETYPE": "docker", "SPANK_SHIFTER_IMAGE": "ubuntu:22.04"},
         "was not pinned to an id at submit"),
        ({"SPANK_SHIFTER_IMAGE": "-x"}, "image"),
        ({"SPANK_SHIFTER_VOLUME": "relative:/x"}, "volume"),
        ({"SPANK_SHIFTER_VOLUME": "/tmp:/etc/x"}, "reserved for the system"),
        ({"SPANK_SHIFTER_MODULE": "nosuch"}, "unknown shifter module"),
    ],
)  # fmt: skip
def test_the_prolog_refuses_job_values_the_submit_check_would_have_refused(
    values: dict[str, str], phrase: str
) -> None:
    config = parse_udiroot_config(CONFIG, "udiRoot.conf")
    with pytest.raises(ShifterError, match=phrase):
        setup_argv(config, _job_env(**values), 65534, "n1/1")
    assert NodeError.__mro__[1] is ShifterError


def test_a_job_uid_without_an_account_on_the_node_is_refused() -> None:
    config = parse_udiroot_config(CONFIG, "udiRoot.conf")
    unused = next(uid for uid in range(54321, 60000) if _no_account(uid))
    with pytest.raises(NodeError, match=f"uid {unused} has no account on this node"):
        setup_argv(config, _job_env(), unused, "n1/1")


def _no_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False


@pytest.mark.parametrize(
    ("request_args", "sshd", "config_extra", "phrase"),
    [
        (("", "", "", True, False), True, "", "does not allow"),  # allowLocalChroot=0
        (("", "", "", True, False), False, "allowLocalChroot=1\n", "needs the job.s sshd"),
        (("id:x", "", "", True, True), True, "allowLocalChroot=1\n", "takes no --image"),
    ],
)  # fmt: skip
def test_ccm_needs_local_chroot_the_sshd_and_nothing_else(
    request_args: tuple[str, str, str, bool, bool], sshd: bool, config_extra: str, phrase: str
) -> None:
    from shifter.wlm.interface import JobRequest
    from shifter.wlm.submit import SubmitError, pin_request

    config = parse_udiroot_config(CONFIG + config_extra, "udiRoot.conf")
    with pytest.raises(SubmitError, match=phrase):
        pin_request(JobRequest(*request_args), config, {}, uid=65534, gids=[65534], sshd=sshd)


def test_the_prolog_passes_the_checked_public_key_only_with_enable_sshd() -> None:
    config = parse_udiroot_config(CONFIG, "udiRoot.conf")
    key = "ssh-rsa AAAAB3NzaC1yc2E job"
    with_key = _job_env(SPANK_SHIFTER_SSH_PUBKEY=f" {key}\n")
    assert "-s" not in setup_argv(config, with_key, 65534, "n1/1")
    argv = setup_argv(config, {**with_key, "SHIFTER_ENABLE_SSHD": "1"}, 65534, "n1/1")
    assert argv[argv.index("-s") + 1] == key
    bad = {**_job_env(SPANK_SHIFTER_SSH_PUBKEY="ssh-rsa AAAA\nssh-rsa B"),
           "SHIFTER_ENABLE_SSHD": "1"}  # fmt: skip
    with pytest.raises(ShifterError, match="not an OpenSSH public key line"):
        setup_argv(config, bad, 65534, "n1/1")


def test_the_jobs_a_process_belongs_to_are_whole_cgroup_components() -> None:
    from shifter.wlm.nodes import jobs_in_cgroups

    text = ("12:memory:/sys/fs/cgroup/memory/shifter/uid_1000/job_12\n"
            "4:freezer:/slurm_shn1/uid_1000/job_12/step_0\n"
            "1:name=systemd:/\n")
    assert jobs_in_cgroups(text) == {"job_12"}
    assert jobs_in_cgroups("4:freezer:/slurm_shn1/uid_1000/job_123/step_batch\n") == {"job_123"}
    assert jobs_in_cgroups("0::/user.slice\n") == set()


# What the extern step's slurmstepd is in (Slurm 22.05, proctrack/cgroup, cgroup v1).
STEPD_CGROUP = ("9:name=systemd:/\n6:freezer:/slurm_shn1/uid_1000/job_12\n"
                "4:memory:/process_api/28b0\n2:cpu,cpuacct:/slurm_shn1/uid_1000/job_12\n0::/\n")


def test_the_jobs_cgroups_are_read_per_hierarchy_up_to_the_job() -> None:
    from shifter.wlm.extern import job_paths

    assert job_paths(STEPD_CGROUP, "12") == {"freezer": "/slurm_shn1/uid_1000/job_12",
                                             "cpu,cpuacct": "/slurm_shn1/uid_1000/job_12"}
    assert job_paths("6:freezer:/slurm_shn1/uid_1000/job_12/step_0\n", "12") == {
        "freezer": "/slurm_shn1/uid_1000/job_12"}
    assert job_paths(STEPD_CGROUP, "1") == {}  # job_12 is not job_1


def test_the_extern_step_dirs_are_those_that_exist_under_each_hierarchy(tmp_path: Path) -> None:
    from shifter.wlm.extern import extern_step_dirs

    freezer = tmp_path / "freezer/slurm_shn1/uid_1000/job_12/step_extern"
    cpu = tmp_path / "cpu/slurm_shn1/uid_1000/job_12/step_extern"  # cpu,cpuacct's name here
    freezer.mkdir(parents=True)
    cpu.mkdir(parents=True)
    assert extern_step_dirs(STEPD_CGROUP, "12", str(tmp_path)) == {
        "freezer": str(freezer), "cpu,cpuacct": str(cpu)}
    cpu.rmdir()
    assert extern_step_dirs(STEPD_CGROUP, "12", str(tmp_path)) == {"freezer": str(freezer)}


def test_a_process_of_a_step_or_already_moved_stays_the_sshd_moves() -> None:
    from shifter.wlm.extern import in_job, job_paths

    own = job_paths(STEPD_CGROUP, "12")
    assert in_job("6:freezer:/slurm_shn1/uid_1000/job_12/step_0\n", own)
    assert in_job("6:freezer:/slurm_shn1/uid_1000/job_12/step_extern\n", own)
    # The sshd the prolog started: in the job's memory_cgroup, in no Slurm cgroup.
    sshd = "6:freezer:/\n4:memory:/shifter/uid_1000/job_12\n"
    assert not in_job(sshd, own)
    assert not in_job("6:freezer:/slurm_shn1/uid_1000/job_123/step_0\n", own)


def test_a_job_cgroup_removed_while_read_counts_as_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several slurmd on one machine share a job's memory cgroup: another node's epilog
    # may remove it while this one reads it (kernfs then says ENODEV).
    from shifter.wlm import cgroup

    job = tmp_path / "shifter" / "uid_1000" / "job_7"
    job.mkdir(parents=True)
    real_open = open

    def removed_while_read(path: str, *args: object, **kwargs: object) -> object:
        if str(path).endswith("cgroup.procs"):
            raise OSError(errno.ENODEV, "No such device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", removed_while_read)
    assert cgroup.end(str(tmp_path), 1000, "7") == 0
    assert not job.exists()
    monkeypatch.setattr("builtins.open", real_open)
    (job.parent / "job_8").mkdir()
    (job.parent / "job_8" / "cgroup.procs").write_text("")
    monkeypatch.setattr(
        "builtins.open",
        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EACCES, "Permission denied")),
    )
    with pytest.raises(OSError):
        cgroup.end(str(tmp_path), 1000, "8")
