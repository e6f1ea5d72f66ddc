"""The testbed's control plane is closed to what shares its network namespace.

hostNetwork pods (Traefik, any user's) share each cluster's namespace, loopback included: etcd
must refuse them without a client certificate of its own CA, every listener must bind only the
address it needs (the table in docs/testbed.md), and every secret file must be owner-only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kubehop.testbed import images, layout
from kubehop.testbed import testbed as tb

from .conftest import CLUSTERS

pytestmark = pytest.mark.usefixtures("testbed")

EDGE = layout.layouts(CLUSTERS)[0]

# Tries to write a key into etcd on the loopback over plain HTTP and over TLS (server not
# verified: an attacker would not bother), with the client certificate given in argv if any.
ETCD_PROBE = """
import json, socket, ssl, sys, urllib.request
cert = sys.argv[1:3]
body = json.dumps({"key": "a3ViZWhvcC1wcm9iZQ==", "value": "eA=="}).encode()
def attempt(scheme):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(*cert)
    req = urllib.request.Request(scheme + "://127.0.0.1:2379/v3/kv/put", data=body)
    try:
        with urllib.request.urlopen(req, timeout=5,
                                    context=ctx if scheme == "https" else None) as r:
            return "accepted %d" % r.status
    except Exception as exc:
        return "refused " + type(exc).__name__
with socket.create_connection(("127.0.0.1", 2379), timeout=5):
    reachable = True
print(json.dumps({"reachable": reachable, "http": attempt("http"),
                  "https": attempt("https")}))
"""


def _probe_in_netns(c: layout.ClusterLayout, *cert: Path) -> dict[str, object]:
    result = subprocess.run(
        ["ip", "netns", "exec", c.netns, sys.executable, "-c", ETCD_PROBE, *map(str, cert)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


def _refused(outcome: object) -> bool:
    # Refused by etcd itself; "nothing listens" (ConnectionRefusedError) would prove nothing.
    return str(outcome).startswith("refused ") and "ConnectionRefused" not in str(outcome)


@pytest.mark.parametrize("name", CLUSTERS)
def test_etcd_refuses_clients_without_its_client_certificate(name: str) -> None:
    c = layout.layouts(CLUSTERS)[CLUSTERS.index(name)]
    anonymous = _probe_in_netns(c)
    assert anonymous["reachable"] is True
    assert _refused(anonymous["http"]), anonymous
    assert _refused(anonymous["https"]), anonymous
    # A certificate of the cluster CA (as any approved CSR would give) does not open etcd.
    admin = _probe_in_netns(c, c.pki_dir / "admin.crt", c.pki_dir / "admin.key")
    assert _refused(admin["https"]), admin
    # The API server's own client certificate does: the refusals above are the certificate's.
    apiserver = _probe_in_netns(c, c.pki_dir / "apiserver-etcd-client.crt",
                                c.pki_dir / "apiserver-etcd-client.key")
    assert apiserver["https"] == "accepted 200", apiserver


def kubectl(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(tb.kubectl_binary()), "--kubeconfig", str(tb.kubeconfig_file()),
         "--context", EDGE.name, *args],
        input=stdin, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_hostnetwork_pod_cannot_use_etcd() -> None:
    ns = f"kh-sec-{secrets.token_hex(3)}"
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "intruder", "namespace": ns},
        "spec": {"hostNetwork": True, "restartPolicy": "Never",
                 "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "probe", "image": images.agw_image().ref(),
                                 "command": ["python3", "-c", ETCD_PROBE]}]},
    }
    kubectl("create", "namespace", ns)
    try:
        kubectl("apply", "-f", "-", stdin=json.dumps(pod))
        kubectl("-n", ns, "wait", "pod/intruder", "--for=jsonpath={.status.phase}=Succeeded",
                "--timeout=180s")
        outcome = json.loads(kubectl("-n", ns, "logs", "intruder"))
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    assert outcome["reachable"] is True, "the pod shares the cluster's loopback"
    assert _refused(outcome["http"]), outcome
    assert _refused(outcome["https"]), outcome


# --- listeners ----------------------------------------------------------------------------------

LOOPBACK = "127.0.0.1"
ANY_PORT = 0


def expected_listeners(c: layout.ClusterLayout) -> set[tuple[str, str, int]]:
    """(process, address, port) of every listener of the testbed's own processes in a
    cluster's namespace; docs/testbed.md shows the same table. ANY_PORT: a random port."""
    node = str(c.node_ip)
    return {
        ("etcd", LOOPBACK, 2379),  # TLS, client certificates of the etcd CA only
        ("etcd", LOOPBACK, 2380),  # peer, same
        ("kube-apiserver", node, 6443),
        ("kube-controller", LOOPBACK, 10257),  # the kernel cuts names to 15 characters
        ("kube-scheduler", LOOPBACK, 10259),
        ("kubelet", node, 10250),
        ("kubelet", LOOPBACK, 10248),  # healthz
        ("kube-proxy", LOOPBACK, 10249),  # metrics
        ("kube-proxy", LOOPBACK, 10256),  # healthz
        ("containerd", LOOPBACK, ANY_PORT),  # CRI streaming (exec, port-forward)
        ("traefik", node, 80),
        ("traefik", node, 9000),  # ping and metrics
        ("traefik", node, 8873),  # volume data of stateful moves (TLS passed through)
    }


_USERS = re.compile(r'users:\(\("([^"]+)"')


def listeners(c: layout.ClusterLayout) -> set[tuple[str, str, int]]:
    """What ``ss`` sees listening (TCP) or bound (UDP) in the cluster's namespace."""
    out = subprocess.run(["ip", "netns", "exec", c.netns, "ss", "-H", "-ltunp"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        address, port = fields[4].rsplit(":", 1)
        match = _USERS.search(line)
        found.add((match.group(1) if match else "?", address.strip("[]"), int(port)))
    return found


@pytest.mark.parametrize("name", CLUSTERS)
def test_listeners_bind_only_the_addresses_they_need(name: str) -> None:
    c = layout.layouts(CLUSTERS)[CLUSTERS.index(name)]
    found = listeners(c)
    # Compares, binds nothing.
    wildcard = {entry for entry in found if entry[1] in {"0.0.0.0", "*", "::", ""}}  # noqa: S104
    assert not wildcard, f"listening on every address: {sorted(wildcard)}"
    expected = expected_listeners(c)
    ours = {proc for proc, _, _ in expected}
    actual = {(proc, addr, ANY_PORT if (proc, addr, ANY_PORT) in expected else port)
              for proc, addr, port in found if proc in ours}
    assert actual == expected, (f"unexpected {sorted(actual - expected)}, "
                                f"missing {sorted(expected - actual)}")


# --- secret files -------------------------------------------------------------------------------

# Data directories of the components (images, the database, pod volumes, logs): not ours.
_NOT_OURS = {"containerd", "etcd", "root", "pod-logs", "data", "logs"}


def _holds_a_secret(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size > 65536:
        return False
    return re.search(rb"PRIVATE KEY|client-key-data|secret \"", path.read_bytes()) is not None


def _secret_files(base: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if d not in _NOT_OURS]
        for name in files:
            path = Path(root) / name
            named = path.suffix in {".key", ".kubeconfig"} or name == "kubeconfig"
            if named or _holds_a_secret(path):
                found.append(path)
    return found


def test_every_key_and_kubeconfig_is_owner_only() -> None:
    files = _secret_files(layout.state_dir())
    names = {p.name for p in files}
    assert {"ca.key", "etcd-ca.key", "apiserver-etcd-client.key", "admin.kubeconfig",
            "kubeconfig", "tsig.key"} <= names, names
    loose = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in files
             if p.stat().st_mode & 0o077]
    assert not loose, loose
    for c in layout.layouts(CLUSTERS):
        for d in (c.pki_dir, c.dir / "kubeconfigs"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d

