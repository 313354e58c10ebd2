"""GPU support with a fake driver (no GPU here: tests/services/gpu_fixtures.py): the
selected GPUs' device nodes and the control nodes in /dev, the driver under
siteResources, a program that dlopens libcuda.so.1 and calls it; nothing of it when
CUDA_VISIBLE_DEVICES is unset, empty or NoDevFiles; the built-in keys and a CDI spec;
the unprivileged path and setupRoot; and the refusals."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.gpu_fixtures import GPU_BASE, NODES, PROBE, UUIDS, FakeDriver, build_probe_image
from tests.services.mpich_fixtures import shared_temp_dir
from tests.services.runtime_fixtures import Site, assert_refused, output_of
from tests.services.setuproot_fixtures import SETUP_ROOT, TEST_USER, RootSite, make_root_site

pytestmark = pytest.mark.root

# In the container: the probe's answer, the GPU nodes in /dev (name major:minor), the
# driver directory, nvidia-smi's first line and the two variables.
REPORT = (
    f"{PROBE}; for n in /dev/nvidia*; do [ -c $n ] && busybox stat -c '%n %t:%T' $n; done; "
    f"ls {GPU_BASE}/lib64 {GPU_BASE}/bin 2>&1; nvidia-smi 2>&1; "
    "echo LD_LIBRARY_PATH=$LD_LIBRARY_PATH; echo PATH=$PATH"
)


class GpuFiles:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.driver = FakeDriver(base / "driver")
        self.image_path = base / "images"
        self.image_path.mkdir(mode=0o755)
        self.image_id = build_probe_image(self.image_path, base / "work")
        self.cdi = self.driver.write_cdi(base / "nvidia.json")
        self.cdi_yaml = self.driver.write_cdi(base / "nvidia.yaml")


@pytest.fixture(scope="module")
def gpu_files() -> Iterator[GpuFiles]:
    with shared_temp_dir("shifter-gpu-") as base:
        yield GpuFiles(base)


@pytest.fixture(params=["keys", "cdi", "cdi-yaml"])
def gpu_site(request: pytest.FixtureRequest, runtime_site: Site, gpu_files: GpuFiles) -> Site:
    if request.param == "keys":
        lines = gpu_files.driver.keys()
    else:
        spec = gpu_files.cdi if request.param == "cdi" else gpu_files.cdi_yaml
        lines = ("siteResources=/opt/shifter/site-resources", f"gpuCdiSpec={spec}")
    runtime_site.configure(*lines, imagePath=gpu_files.image_path)
    return runtime_site


def report(site: Site, files: GpuFiles, env: dict[str, str]) -> str:
    result = site.run(f"--image=id:{files.image_id}", "sh", "-c", REPORT, env=env,
                      cwd=Path("/"))  # fmt: skip
    return result.stdout


def node_line(name: str) -> str:
    major, minor = NODES[name]
    return f"/dev/{name} {major:x}:{minor:x}"


def assert_gpus(out: str, names: list[str]) -> None:
    lines = out.splitlines()
    assert lines[:2] == ["cuInit 0", f"devices {len(names)}"], out
    assert lines[2] == f"from {GPU_BASE}/lib64/libcuda.so.1", out
    nodes = sorted(line for line in lines if line.startswith("/dev/"))
    assert nodes == sorted(node_line(n) for n in [*names, "nvidiactl", "nvidia-uvm"]), out
    assert "libcuda.so.1" in lines and "libnvidia-ml.so.1" in lines and "nvidia-smi" in lines
    assert f"GPU 0: Fake GPU (UUID: {UUIDS[0]})" in lines, out
    assert f"LD_LIBRARY_PATH={GPU_BASE}/lib64:{GPU_BASE}/lib" in lines, out
    assert f"PATH=/app:/usr/bin:/bin:{GPU_BASE}/bin" in lines, out


def assert_no_gpu(out: str) -> None:
    lines = out.splitlines()
    assert lines[0].startswith("no libcuda: libcuda.so.1: cannot open shared object"), out
    assert not any(line.startswith("/dev/nvidia") for line in lines), out
    assert "nvidia-smi: not found" in out and "LD_LIBRARY_PATH=" in lines, out


@pytest.mark.parametrize(("selection", "names"), [
    ("0", ["nvidia0"]),
    ("1", ["nvidia1"]),
    (UUIDS[1], ["nvidia1"]),
    (f"0,{UUIDS[1]}", ["nvidia0", "nvidia1"]),
])  # fmt: skip
def test_selected_gpus_and_the_driver(
    gpu_site: Site, gpu_files: GpuFiles, selection: str, names: list[str]
) -> None:
    assert_gpus(report(gpu_site, gpu_files, {"CUDA_VISIBLE_DEVICES": selection}), names)


@pytest.mark.parametrize("env", [{}, {"CUDA_VISIBLE_DEVICES": ""},
                                 {"CUDA_VISIBLE_DEVICES": "NoDevFiles"}])  # fmt: skip
def test_nothing_without_a_selection(gpu_site: Site, gpu_files: GpuFiles,
                                     env: dict[str, str]) -> None:  # fmt: skip
    out = report(gpu_site, gpu_files, env)
    assert_no_gpu(out)
    assert f"ls: {GPU_BASE}/lib64: No such file or directory" in out


def test_the_cdi_environment(runtime_site: Site, gpu_files: GpuFiles) -> None:
    runtime_site.configure("siteResources=/opt/shifter/site-resources",
                           f"gpuCdiSpec={gpu_files.cdi}", imagePath=gpu_files.image_path)
    result = runtime_site.run(f"--image=id:{gpu_files.image_id}", "env", cwd=Path("/"),
                              env={"CUDA_VISIBLE_DEVICES": "0"})  # fmt: skip
    env = output_of(result).splitlines()
    assert "SHIFTER_TEST_CDI=1" in env and "NVIDIA_VISIBLE_DEVICES=void" in env


def test_the_container_dev_keeps_the_hosts_devices(gpu_site: Site, gpu_files: GpuFiles) -> None:
    # /dev/loop-control is root's (0600): the user could not open it, it is left out.
    assert oct(os.stat("/dev/loop-control").st_mode & 0o777) == "0o600"
    script = ("echo x > /dev/null && echo null-ok; busybox stat -c '%d %i' /dev/shm; "
              "ls /dev/pts >/dev/null && echo pts-ok; touch /dev/new 2>/dev/null || echo ro; "
              "[ -e /dev/loop-control ] || echo no-loop-control")
    out = output_of(gpu_site.run(f"--image=id:{gpu_files.image_id}", "sh", "-c", script,
                                 env={"CUDA_VISIBLE_DEVICES": "0"}, cwd=Path("/")))  # fmt: skip
    shm = os.stat("/dev/shm")
    assert out.splitlines() == [
        "null-ok", f"{shm.st_dev} {shm.st_ino}", "pts-ok", "ro", "no-loop-control"
    ]


@pytest.mark.parametrize("selection", ["7", "GPU-nothere", "0,,1", "nvidia0"])
def test_a_gpu_the_node_does_not_have(gpu_site: Site, gpu_files: GpuFiles, selection: str
                                      ) -> None:  # fmt: skip
    result = gpu_site.run(f"--image=id:{gpu_files.image_id}", "true", cwd=Path("/"),
                          env={"CUDA_VISIBLE_DEVICES": selection})  # fmt: skip
    phrase = "has an empty entry" if ",," in selection else "which this node does not have"
    assert_refused(result, "CUDA_VISIBLE_DEVICES", phrase)


@pytest.fixture
def spec_dir(gpu_files: GpuFiles) -> Path:
    """A directory the test user can read (pytest's tmp_path sits under a 0700 one)."""
    path = Path(tempfile.mkdtemp(dir=gpu_files.base, prefix="specs-"))
    path.chmod(0o755)
    return path


def test_a_malformed_cdi_spec(runtime_site: Site, gpu_files: GpuFiles, spec_dir: Path) -> None:
    spec = spec_dir / "broken.json"
    spec.write_text('{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [')
    spec.chmod(0o644)
    runtime_site.configure("siteResources=/opt/shifter/site-resources", f"gpuCdiSpec={spec}",
                           imagePath=gpu_files.image_path)  # fmt: skip
    result = runtime_site.run(f"--image=id:{gpu_files.image_id}", "true", cwd=Path("/"),
                              env={"CUDA_VISIBLE_DEVICES": "0"})  # fmt: skip
    assert_refused(result, f"{spec}: not valid JSON", "nvidia-ctk cdi generate --format=json")


def test_a_cdi_spec_naming_a_missing_device(runtime_site: Site, gpu_files: GpuFiles,
                                            spec_dir: Path) -> None:  # fmt: skip
    document = gpu_files.driver.cdi_spec()
    missing = str(spec_dir / "nvidia9")
    devices: list[dict[str, dict[str, list[dict[str, str]]]]] = document["devices"]  # type: ignore[assignment]
    devices[0]["containerEdits"]["deviceNodes"][0]["hostPath"] = missing
    spec = gpu_files.driver.write_cdi(spec_dir / "missing.json", document)
    runtime_site.configure("siteResources=/opt/shifter/site-resources", f"gpuCdiSpec={spec}",
                           imagePath=gpu_files.image_path)  # fmt: skip
    result = runtime_site.run(f"--image=id:{gpu_files.image_id}", "true", cwd=Path("/"),
                              env={"CUDA_VISIBLE_DEVICES": "0"})  # fmt: skip
    assert_refused(result, f"names device node {missing}, which does not exist")
    # GPU 1 is unaffected.
    ok = runtime_site.run(f"--image=id:{gpu_files.image_id}", "true", cwd=Path("/"),
                          env={"CUDA_VISIBLE_DEVICES": "1"})  # fmt: skip
    assert ok.returncode == 0, ok.stderr


def test_a_cdi_spec_others_can_write_is_refused(runtime_site: Site, gpu_files: GpuFiles,
                                                spec_dir: Path) -> None:  # fmt: skip
    spec = gpu_files.driver.write_cdi(spec_dir / "writable.json")
    spec.chmod(0o666)
    config = runtime_site.configure(
        "siteResources=/opt/shifter/site-resources", f"gpuCdiSpec={spec}",
        imagePath=gpu_files.image_path,
    )  # fmt: skip
    result = runtime_site.run(f"--image=id:{gpu_files.image_id}", "true", cwd=Path("/"),
                              env={"CUDA_VISIBLE_DEVICES": "0"})  # fmt: skip
    line = len(config.read_text().splitlines())
    assert_refused(result, f"{config}:{line}",
                   "must be owned by root and not writable by group or others")  # fmt: skip


def test_a_yaml_cdi_spec_beyond_the_subset_names_its_line(
    runtime_site: Site, gpu_files: GpuFiles, spec_dir: Path
) -> None:
    spec = gpu_files.driver.write_cdi(spec_dir / "anchors.yaml")
    text = spec.read_text().replace("kind: nvidia.com/gpu", "kind: &k nvidia.com/gpu")
    spec.write_text(text)
    line = text.splitlines().index("kind: &k nvidia.com/gpu") + 1
    runtime_site.configure("siteResources=/opt/shifter/site-resources", f"gpuCdiSpec={spec}",
                           imagePath=gpu_files.image_path)  # fmt: skip
    result = runtime_site.run(f"--image=id:{gpu_files.image_id}", "true", cwd=Path("/"),
                              env={"CUDA_VISIBLE_DEVICES": "0"})  # fmt: skip
    assert_refused(result, f"{spec}:{line}", "uses YAML beyond what CDI specs need",
                   "--format=json")  # fmt: skip


@pytest.fixture
def root_site(runtime_site: Site) -> Iterator[RootSite]:
    yield from make_root_site(runtime_site)


def setup_root(root: RootSite, files: GpuFiles, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [str(SETUP_ROOT), "-u", TEST_USER, *options, "id", files.image_id]
    return subprocess.run(argv, env=root.env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", ["keys", "cdi", "cdi-yaml"])
def test_setuproot_gives_the_jobs_gpus(root_site: RootSite, gpu_files: GpuFiles, kind: str
                                       ) -> None:  # fmt: skip
    spec = gpu_files.cdi if kind == "cdi" else gpu_files.cdi_yaml
    lines = gpu_files.driver.keys() if kind == "keys" else (
        "siteResources=/opt/shifter/site-resources", f"gpuCdiSpec={spec}")
    root_site.configure(*lines, imagePath=gpu_files.image_path)
    result = setup_root(root_site, gpu_files, "--gpus", UUIDS[1])
    assert result.returncode == 0, result.stderr
    # The job's GPUs, whatever the caller's own selection says: the container is used as is.
    for env in ({}, {"CUDA_VISIBLE_DEVICES": "0"}):
        assert_gpus(report(root_site.site, gpu_files, env), ["nvidia1"])
    mounts = output_of(root_site.run(f"--image=id:{gpu_files.image_id}", "cat",
                                     "/proc/self/mountinfo", cwd=Path("/")))  # fmt: skip
    assert " squashfs " in mounts  # entered, not built by shifter


def test_setuproot_without_gpus(root_site: RootSite, gpu_files: GpuFiles) -> None:
    root_site.configure(*gpu_files.driver.keys(), imagePath=gpu_files.image_path)
    assert setup_root(root_site, gpu_files).returncode == 0
    assert_no_gpu(report(root_site.site, gpu_files, {"CUDA_VISIBLE_DEVICES": "0"}))


def test_setuproot_refuses_a_gpu_the_node_does_not_have(root_site: RootSite,
                                                         gpu_files: GpuFiles) -> None:  # fmt: skip
    root_site.configure(*gpu_files.driver.keys(), imagePath=gpu_files.image_path)
    result = setup_root(root_site, gpu_files, "--gpus", "0,5")
    assert result.returncode == 1
    assert "--gpus names GPU '5', which this node does not have" in result.stderr
    assert root_site.mounts() == []
