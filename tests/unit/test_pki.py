"""The testbed PKI: the certificates each component needs, keys kept private."""

import os
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

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
    old_umask = os.umask(0)
    try:
        stale = cluster.pki_dir / "admin.key"
        stale.parent.mkdir(parents=True)
        stale.write_text("from an older run, world-readable")
        stale.chmod(0o644)
        cluster.pki_dir.chmod(0o755)
        pki = ClusterPKI(cluster)
        pki.create_all(components.client_identities(cluster))
        path = cluster.dir / "admin.kubeconfig"
        path.write_text("")
        path.chmod(0o666)
        write_kubeconfig(path, pki.kubeconfig("admin", context="cloud"))
    finally:
        os.umask(old_umask)
    keys = list(pki.dir.glob("*.key"))
    assert {"ca.key", "etcd-ca.key", "admin.key", "apiserver-etcd-client.key"} <= {
        k.name for k in keys}
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(pki.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "cloud"
    assert config["clusters"][0]["cluster"]["server"] == f"https://{cluster.node_ip}:6443"


def _signed_by(cert_path: Path, ca_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_etcd_has_its_own_ca_that_signs_only_etcd_and_the_api_server(
    cluster: layout.ClusterLayout,
) -> None:
    """A certificate of the cluster CA (any approved CSR) must not open etcd."""
    pki = ClusterPKI(cluster)
    pki.create_all(components.client_identities(cluster))
    etcd_ca = pki.cert_path("etcd-ca")
    assert _signed_by(pki.cert_path("apiserver-etcd-client"), etcd_ca)
    assert _signed_by(pki.cert_path("etcd-server"), etcd_ca)
    assert not _signed_by(pki.cert_path("apiserver-etcd-client"), pki.ca_cert_path)
    signed_by_etcd_ca = sorted(p.stem for p in pki.dir.glob("*.crt")
                               if p.stem != "etcd-ca" and _signed_by(p, etcd_ca))
    assert signed_by_etcd_ca == ["apiserver-etcd-client", "etcd-server"]
    ips = {str(ip) for ip in _sans(pki.cert_path("etcd-server")).get_values_for_type(
        x509.IPAddress)}
    assert ips == {"127.0.0.1"}
