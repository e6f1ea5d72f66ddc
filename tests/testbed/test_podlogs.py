"""A finished pod's logs stay readable after every kubelet's garbage collection has run.

Each kubelet's container GC (every minute) deletes the pod log directories of pods it does not
know; with one shared /var/log/pods, the other clusters' kubelets deleted ours. The test does
not sleep: it plants a decoy log directory of an unknown pod in every kubelet's pod log
directory and polls until every decoy is gone (so every GC has run), checking the logs at each
poll.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubehop.testbed import images, layout
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for

from .conftest import CLUSTERS

pytestmark = pytest.mark.usefixtures("testbed")

EDGE = layout.layouts(CLUSTERS)[0]


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(tb.kubectl_binary()), "--kubeconfig", str(tb.kubeconfig_file()),
         "--context", EDGE.name, *args],
        capture_output=True, text=True, check=False, timeout=120)
    assert not check or result.returncode == 0, result.stderr
    return result


def pod_logs_dir(c: layout.ClusterLayout) -> Path:
    """Where this cluster's kubelet keeps pod logs, as its configuration says."""
    config = yaml.safe_load((c.dir / "kubelet" / "config.yaml").read_text())
    return Path(config.get("podLogsDir", "/var/log/pods"))


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"kh-logs-{secrets.token_hex(3)}"
    kubectl("create", "namespace", ns)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false")


def test_finished_pod_logs_survive_every_kubelets_gc(namespace: str) -> None:
    word = f"kubehop-{secrets.token_hex(4)}"
    kubectl("-n", namespace, "run", "lt", "--restart=Never", f"--image={images.agw_image().ref()}",
            "--command", "--", "python3", "-c", f"print({word!r})")
    kubectl("-n", namespace, "wait", "pod/lt", "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=180s")

    def logs_readable() -> None:
        result = kubectl("-n", namespace, "logs", "lt", check=False)
        assert result.returncode == 0 and result.stdout.strip() == word, (
            f"the finished pod's logs are gone: {result.stderr.strip()}")

    logs_readable()
    pod = json.loads(kubectl("-n", namespace, "get", "pod", "lt", "-o", "json").stdout)
    ours = pod_logs_dir(EDGE) / f"{namespace}_lt_{pod['metadata']['uid']}"
    assert ours.is_dir()

    decoys = []
    for c in layout.layouts(CLUSTERS):
        decoy = pod_logs_dir(c) / f"kh-decoy_{c.name}_{uuid.uuid4()}"
        decoy.mkdir(parents=True)
        decoys.append(decoy)

    def every_gc_ran() -> bool:
        logs_readable()  # an AssertionError ends the wait at once
        left = [d.name for d in decoys if d.exists()]
        if left:
            raise NotYet(f"decoys not collected yet: {left}")
        return True

    # The container GC runs every minute; two periods and some slack.
    wait_for(every_gc_ran, timeout=200, what="every kubelet's pod log GC", interval=2)
    logs_readable()
    assert ours.is_dir()


def test_each_cluster_keeps_its_pod_logs_under_its_state_directory() -> None:
    dirs = [pod_logs_dir(c) for c in layout.layouts(CLUSTERS)]
    assert len(set(dirs)) == len(dirs)
    for c, d in zip(layout.layouts(CLUSTERS), dirs, strict=True):
        assert d.is_relative_to(c.dir), d
        assert d.is_dir()
