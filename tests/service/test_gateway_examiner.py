"""The site's examiner runs on every converted image before anything is published.

A shell script stands in for a site's scanner: it records what it was given, then passes,
refuses with a message, or takes too long. A pull it refuses or that outlives
ExaminerTimeout fails with the examiner's output as the reason and publishes nothing; a
missing examiner stops the gateway at start-up, or fails the pull if it disappears later.
Imports are examined too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from shifter.errors import ConfigError
from shifter.gateway.imports import fasthash
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.service.test_gateway_api import IN_PROGRESS, pull_until_done
from tests.service.test_transfer_support import shared_dir
from tests.services.gateway_fixtures import (
    SYSTEM,
    USER_A,
    Caller,
    GatewayEnv,
    running_app,
    wait_for,
)
from tests.services.registries import RegistryEndpoint


def examiner(directory: Path, body: str) -> Path:
    """A script that logs its arguments and the image's first bytes, then runs `body`."""
    script = directory / "examine"
    log = directory / "examined"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s %s %s\\n" "$1" "$2" "$(head -c 4 "$1")" >> {log}\n'
        f"{body}\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def tag(registry_anon: RegistryEndpoint, repo_name: str) -> str:
    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    return f"{repo_name}:v1"


def pull_with(env: GatewayEnv, caller: Caller, tag: str, body: str,
              **config: Any) -> tuple[dict[str, Any], list[str], list[str]]:
    """The pull's last record, the examiner's log lines, and the statuses seen polling."""
    script = examiner(env.root, body)
    statuses: list[str] = []
    with running_app(env.config(examiner=str(script), **config)) as client:
        def finished() -> dict[str, Any] | None:
            reply = client.post(f"/api/pull/{SYSTEM}/docker/{tag}/",
                                headers=caller.headers(USER_A))
            record: dict[str, Any] = reply.json()
            statuses.append(record["status"])
            return None if record["status"] in IN_PROGRESS else record

        done = wait_for(finished, what=f"the pull of {tag}")
        outcome = "finished" if done["status"] == "READY" else "failed"
        wait_for(lambda: f'shifter_imagegw_jobs_finished_total{{kind="pull",outcome="{outcome}"}} '
                 "1.0" in client.get("/metrics").text, what="the job counted as " + outcome)
    log = env.root / "examined"
    return done, log.read_text().splitlines() if log.exists() else [], statuses


def test_an_image_the_examiner_passes_is_published(
    gateway_env: GatewayEnv, caller: Caller, tag: str
) -> None:
    done, examined, statuses = pull_with(gateway_env, caller, tag, "sleep 1; exit 0")
    assert done["status"] == "READY", done["status_message"]
    assert "EXAMINATION" in statuses
    (line,) = examined
    path, image_id, magic = line.split()
    assert (Path(path).name, image_id, magic) == (f"{done['id']}.squashfs", done["id"], "hsqs")
    assert Path(path).is_relative_to(gateway_env.expand_dir)
    assert gateway_env.image_files() == sorted(
        f"{done['id']}.{suffix}" for suffix in ("json", "meta", "squashfs"))


def test_an_image_the_examiner_refuses_fails_and_nothing_is_published(
    gateway_env: GatewayEnv, caller: Caller, tag: str
) -> None:
    done, examined, _ = pull_with(gateway_env, caller, tag,
                               "echo 'scanning'; echo 'found: EICAR test file' >&2; exit 3")
    assert done["status"] == "FAILURE"
    assert done["status_message"] == (
        "the examiner refused the image (exit status 3): scanning / found: EICAR test file")
    assert len(examined) == 1
    assert gateway_env.image_files() == []


def test_an_examiner_that_takes_too_long_fails_the_pull(
    gateway_env: GatewayEnv, caller: Caller, tag: str
) -> None:
    done, _, _ = pull_with(gateway_env, caller, tag, "exec sleep 30", ExaminerTimeout=1)
    assert done["status"] == "FAILURE"
    assert done["status_message"] == "the examiner did not finish within 1 s"
    assert gateway_env.image_files() == []


def test_a_missing_examiner_stops_the_gateway_or_fails_the_pull(
    gateway_env: GatewayEnv, caller: Caller, tag: str
) -> None:
    missing = gateway_env.root / "no-such-examiner"
    with pytest.raises(ConfigError) as refused, running_app(
            gateway_env.config(examiner=str(missing))):
        pass
    assert f"the examiner {missing} is not an executable file" in str(refused.value)

    script = examiner(gateway_env.root, "exit 0")
    with running_app(gateway_env.config(examiner=str(script))) as client:
        script.unlink()  # removed after start-up
        done = pull_until_done(client, caller, tag)
    assert done["status"] == "FAILURE"
    assert done["status_message"] == f"the examiner {script} is missing"
    assert gateway_env.image_files() == []


def test_imports_are_examined(gateway_env: GatewayEnv, caller: Caller) -> None:
    with shared_dir("shifter-examine-import-") as top:
        tree = top / "tree"
        tree.mkdir()
        (tree / "hello.txt").write_text("hi\n")
        image = top / "tool.squashfs"
        subprocess.run(["mksquashfs", str(tree), str(image), "-all-root", "-quiet",
                        "-noappend"], check=True, capture_output=True)
        image.chmod(0o644)
        script = examiner(gateway_env.root, "exit 1")
        with running_app(gateway_env.config(examiner=str(script))) as client:
            def done() -> dict[str, Any] | None:
                reply = client.post(f"/api/doimport/{SYSTEM}/custom/tool:v1/",
                                    headers=caller.headers(USER_A),
                                    json={"filepath": str(image), "format": "squashfs"})
                assert reply.status_code == 200, reply.text
                record: dict[str, Any] = reply.json()
                return record if record["status"] in ("READY", "FAILURE") else None

            record = wait_for(done, what="the import")
        assert record["status"] == "FAILURE"
        assert record["status_message"] == "the examiner refused the image (exit status 1)"
        (line,) = (gateway_env.root / "examined").read_text().splitlines()
        assert line.split()[1] == fasthash(image)
    assert gateway_env.image_files() == []
