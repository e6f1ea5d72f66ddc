"""The testbed PKI: the certificates each component needs, keys kept private."""

from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kubehop.testbed import components, layout
from kubehop.testbed.pki import ClusterPKI, write_kubeconfig


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> layout.ClusterLayout:
    monkeypatch.setenv("KUBEHOP_STATE", str(tmp_path))
    return layout.layouts(("edge", "cloud"))[1]


def _sans(path: Path) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_apiserver_cert_names_every_way_clients_reach_it(cluster: layout.ClusterLayout) -> None:
    pki = ClusterPKI(cluster)
    pki.create_all(components.client_identities(cluster))
    sans = _sans(pki.cert_path("apiserver"))
    dns = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert "kubernetes.default.svc.cluster.local" in dns
    assert {str(cluster.api_service_ip), str(cluster.node_ip), "127.0.0.1"} <= ips


def test_kubelet_client_cert_is_in_the_nodes_group(cluster: layout.ClusterLayout) -> None:
    pki = ClusterPKI(cluster)
    pki.create_all(components.client_identities(cluster))
    cert = x509.load_pem_x509_certificate(pki.cert_path("kubelet").read_bytes())
    subject = cert.subject.rfc4514_string()
    assert f"CN=system:node:{cluster.node_name}" in subject
    assert "O=system:nodes" in subject


def test_private_keys_and_kubeconfigs_are_owner_only(cluster: layout.ClusterLayout) -> None:
    pki = ClusterPKI(cluster)
    pki.create_all(components.client_identities(cluster))
    for key in pki.dir.glob("*.key"):
        assert key.stat().st_mode & 0o077 == 0, key
    path = cluster.dir / "admin.kubeconfig"
    write_kubeconfig(path, pki.kubeconfig("admin", context="cloud"))
    assert path.stat().st_mode & 0o077 == 0
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "cloud"
    assert config["clusters"][0]["cluster"]["server"] == f"https://{cluster.node_ip}:6443"
