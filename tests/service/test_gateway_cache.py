"""The layer cache under CacheSizeLimit: pruned after every pull, and by
`shifter-imagegw prune` (dry run, --limit) for admins who need space now."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.service.test_gateway_api import pull_until_done
from tests.services.gateway_fixtures import BIN, Caller, GatewayEnv, running_app, wait_for
from tests.services.registries import RegistryEndpoint


def test_the_gateway_prunes_the_cache_after_a_pull(
    gateway_env: GatewayEnv, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    push_image(catalog.build("layered"), registry_anon.url, repo_name, "v1")
    blobs = gateway_env.root / "cache" / "sha256"
    with running_app(gateway_env.config(CacheSizeLimit=1)) as client:
        done = pull_until_done(client, caller, f"{repo_name}:v1")
        assert done["status"] == "READY", done["status_message"]
        wait_for(lambda: not any(blobs.iterdir()), what="the layers to be pruned")
    assert not any((gateway_env.root / "cache" / "locks").iterdir())
    assert (gateway_env.image_dir / f"{done['id']}.squashfs").is_file()


def test_prune_command(gateway_env: GatewayEnv, tmp_path: Path) -> None:
    cache = gateway_env.root / "cache"
    for directory in ("sha256", "locks", "partial"):
        (cache / directory).mkdir(exist_ok=True)
    ages = {}
    for number, age in enumerate((300, 200, 100)):
        content = bytes([number]) * (1 << 20)
        hex_digest = hashlib.sha256(content).hexdigest()
        (cache / "sha256" / hex_digest).write_bytes(content)
        then = time.time() - age
        os.utime(cache / "sha256" / hex_digest, (then, then))
        ages[age] = hex_digest
    config = gateway_env.write(CacheSizeLimit="2M")

    def prune(*args: str) -> str:
        result = subprocess.run([str(BIN / "shifter-imagegw"), "prune", "--config", str(config),
                                 *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    dry = prune("--dry-run")
    assert dry.splitlines() == [
        f"would remove 1 layer(s), 1.0 MiB; the layer cache {cache} would hold 2.0 MiB "
        "(limit 2.0 MiB)",
        f"  sha256:{ages[300]}  1.0 MiB",
    ]
    assert len(list((cache / "sha256").iterdir())) == 3
    assert prune().startswith("removed 1 layer(s), 1.0 MiB;")
    assert sorted(p.name for p in (cache / "sha256").iterdir()) == sorted([ages[200], ages[100]])
    assert prune("--limit", "0").startswith("removed 2 layer(s), 2.0 MiB;")
    refused = subprocess.run([str(BIN / "shifter-imagegw"), "prune", "--config", str(config),
                              "--limit", "lots"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "--limit must be a size" in refused.stderr
