"""A finished pod's logs stay readable after every kubelet's garbage collection has run.

Each kubelet's container GC (every minute) deletes the pod log directories of pods it does not
know; with one shared /var/log/pods, the other clusters' kubelets deleted ours. The test does
not sleep: it polls the logs until every kubelet has provably run its GC. The proof, per
kubelet: a dangling link in /var/log/containers named after a finished container that only
that cluster's containerd knows. A kubelet removes such a link only for a container its own
runtime reports as exited, and only after the pod log directories in the same GC pass.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubehop.testbed import images, layout
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for

from .conftest import CLUSTERS

pytestmark = pytest.mark.usefixtures("testbed")

CLUSTER_LAYOUTS = layout.layouts(CLUSTERS)
EDGE = CLUSTER_LAYOUTS[0]
CONTAINER_LOG_LINKS = Path("/var/log/containers")


def kubectl(*args: str, context: str = EDGE.name,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(tb.kubectl_binary()), "--kubeconfig", str(tb.kubeconfig_file()),
         "--context", context, *args],
        capture_output=True, text=True, check=False, timeout=240)
    assert not check or result.returncode == 0, result.stderr
    return result


def pod_logs_dir(c: layout.ClusterLayout) -> Path:
    """Where this cluster's kubelet keeps pod logs, as its configuration says."""
    config = yaml.safe_load((c.dir / "kubelet" / "config.yaml").read_text())
    return Path(config.get("podLogsDir", "/var/log/pods"))


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"kh-logs-{secrets.token_hex(3)}"
    for c in CLUSTER_LAYOUTS:
        kubectl("create", "namespace", ns, context=c.name)
    yield ns
    for c in CLUSTER_LAYOUTS:
        kubectl("delete", "namespace", ns, "--wait=false", context=c.name)


def _finished_pod(c: layout.ClusterLayout, ns: str, name: str, word: str) -> dict[str, object]:
    """Run ``print(word)`` to completion in cluster ``c``; the pod as the API shows it."""
    kubectl("-n", ns, "run", name, "--restart=Never", f"--image={images.agw_image().ref()}",
            "--command", "--", "python3", "-c", f"print({word!r})", context=c.name)
    kubectl("-n", ns, "wait", f"pod/{name}", "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=180s", context=c.name)
    pod: dict[str, object] = json.loads(
        kubectl("-n", ns, "get", "pod", name, "-o", "json", context=c.name).stdout)
    return pod


def _gc_witness(c: layout.ClusterLayout, pod: dict[str, object]) -> Path:
    """A dangling log link for the pod's (exited) container: only ``c``'s kubelet removes it."""
    status = pod["status"]
    assert isinstance(status, dict)
    container_id = status["containerStatuses"][0]["containerID"].split("://")[-1]
    link = CONTAINER_LOG_LINKS / f"kh-gc-witness_{c.name}_probe-{container_id}.log"
    CONTAINER_LOG_LINKS.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    # Into the state directory, so 'testbed down' sweeps it if the test fails half-way.
    link.symlink_to(c.dir / "no-such-log" / "0.log")
    return link


def test_finished_pod_logs_survive_every_kubelets_gc(namespace: str) -> None:
    word = f"kubehop-{secrets.token_hex(4)}"
    lt = _finished_pod(EDGE, namespace, "lt", word)

    def logs_readable() -> None:
        result = kubectl("-n", namespace, "logs", "lt", check=False)
        assert result.returncode == 0 and result.stdout.strip() == word, (
            f"the finished pod's logs are gone: {result.stderr.strip()}")

    logs_readable()
    metadata = lt["metadata"]
    assert isinstance(metadata, dict)
    assert (pod_logs_dir(EDGE) / f"{namespace}_lt_{metadata['uid']}").is_dir()

    witnesses = [_gc_witness(EDGE, lt)]
    for c in CLUSTER_LAYOUTS[1:]:
        witnesses.append(_gc_witness(c, _finished_pod(c, namespace, "probe", word)))

    def every_gc_ran() -> bool:
        logs_readable()  # an AssertionError ends the wait at once
        left = [w.name for w in witnesses if w.is_symlink()]
        if left:
            raise NotYet(f"kubelets whose GC has not run yet: {left}")
        return True

    # The container GC runs every minute in each kubelet; one period and ample slack.
    wait_for(every_gc_ran, timeout=240, what="every kubelet's container GC", interval=2)
    logs_readable()


def test_each_cluster_keeps_its_pod_logs_under_its_state_directory() -> None:
    dirs = [pod_logs_dir(c) for c in layout.layouts(CLUSTERS)]
    assert len(set(dirs)) == len(dirs)
    for c, d in zip(layout.layouts(CLUSTERS), dirs, strict=True):
        assert d.is_relative_to(c.dir), d
        assert d.is_dir()
