"""Certificates and kubeconfigs of one testbed cluster.

One CA per cluster, as separate clusters would have, and a second one for etcd alone: etcd
trusts only certificates of its own CA (its peer certificate and the API server's client
certificate), so no certificate the cluster CA signs (an approved CSR, a kubelet's) opens the
database. ECDSA P-256 keys because they are fast to make and every component accepts them.
Private keys and kubeconfigs are owner-only files from the start (:mod:`kubehop.files`), in an
owner-only directory, and never printed.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubehop.files import private_dir, write_private
from kubehop.testbed.layout import CLUSTER_DOMAIN, ClusterLayout

_VALIDITY = dt.timedelta(days=365)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate to issue: file stem, common name, organisations."""

    stem: str
    common_name: str
    organizations: tuple[str, ...] = ()


CLUSTER_CA = "ca"
ETCD_CA = "etcd-ca"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


class ClusterPKI:
    """Issues and stores the certificates of one cluster under ``layout.pki_dir``."""

    def __init__(self, cluster: ClusterLayout) -> None:
        self.cluster = cluster
        self.dir = cluster.pki_dir
        self._cas: dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]] = {}

    @property
    def ca_cert_path(self) -> Path:
        return self.cert_path(CLUSTER_CA)

    def cert_path(self, stem: str) -> Path:
        return self.dir / f"{stem}.crt"

    def key_path(self, stem: str) -> Path:
        return self.dir / f"{stem}.key"

    def create_ca(self, stem: str = CLUSTER_CA) -> None:
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"kubehop-{self.cluster.name}-{stem}")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY * 10)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        self._cas[stem] = (key, cert)
        write_private(self.key_path(stem), _key_pem(key))
        self.cert_path(stem).write_bytes(_cert_pem(cert))

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        dns_names: tuple[str, ...] = (),
        ips: tuple[IPAddress, ...] = (),
        server: bool = False,
        client: bool = False,
        ca: str = CLUSTER_CA,
    ) -> None:
        """Issue a leaf certificate signed by CA ``ca`` (the cluster's, or etcd's)."""
        if ca not in self._cas:
            raise RuntimeError(f"ClusterPKI.create_ca({ca!r}) must run before issue()")
        ca_key, ca_cert = self._cas[ca]
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ip) for ip in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write_private(self.key_path(stem), _key_pem(key))
        self.cert_path(stem).write_bytes(_cert_pem(cert))

    def create_service_account_keys(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(self.key_path("service-account"), _key_pem(key))
        self.dir.joinpath("service-account.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def create_all(self, clients: list[ClientIdentity]) -> None:
        """Everything a cluster needs: CA, API server and kubelet serving certs, client certs,
        and etcd's own CA with its serving/peer certificate and the API server's client one."""
        c = self.cluster
        private_dir(self.dir)
        self.create_ca()
        self.create_etcd()
        self.create_service_account_keys()
        self.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
                "localhost",
            ),
            ips=(c.api_service_ip, c.node_ip, LOOPBACK),
            server=True,
        )
        self.issue(
            "kubelet-serving",
            f"system:node:{c.node_name}",
            organizations=("system:nodes",),
            dns_names=(c.node_name,),
            ips=(c.node_ip,),
            server=True,
        )
        for ident in clients:
            self.issue(
                ident.stem, ident.common_name, organizations=ident.organizations, client=True
            )

    def create_etcd(self) -> None:
        """etcd listens on the loopback only; one certificate serves clients and its peer
        listener (as server and client), and only the API server gets a client certificate."""
        self.create_ca(ETCD_CA)
        self.issue("etcd-server", f"etcd-{self.cluster.name}", dns_names=("localhost",),
                   ips=(LOOPBACK,), server=True, client=True, ca=ETCD_CA)
        self.issue("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True,
                   ca=ETCD_CA)

    def kubeconfig(
        self, stem: str, *, context: str, server: str | None = None
    ) -> dict[str, object]:
        """A kubeconfig (as a dict) for client certificate ``stem`` with one context."""
        return kubeconfig_dict(
            [
                KubeconfigEntry(
                    context=context,
                    server=server or self.cluster.api_url,
                    ca_pem=self.ca_cert_path.read_bytes(),
                    cert_pem=self.cert_path(stem).read_bytes(),
                    key_pem=self.key_path(stem).read_bytes(),
                )
            ]
        )


@dataclass(frozen=True)
class KubeconfigEntry:
    context: str
    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig_dict(entries: list[KubeconfigEntry]) -> dict[str, object]:
    """One cluster, user and context per entry, all named after the context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": entries[0].context,
        "clusters": [
            {
                "name": e.context,
                "cluster": {"server": e.server, "certificate-authority-data": _b64(e.ca_pem)},
            }
            for e in entries
        ],
        "users": [
            {
                "name": e.context,
                "user": {
                    "client-certificate-data": _b64(e.cert_pem),
                    "client-key-data": _b64(e.key_pem),
                },
            }
            for e in entries
        ],
        "contexts": [
            {"name": e.context, "context": {"cluster": e.context, "user": e.context}}
            for e in entries
        ],
    }


def write_kubeconfig(path: Path, config: dict[str, object]) -> None:
    """Write a kubeconfig owner-only (0600) from the start: it holds a private key."""
    write_private(path, yaml.safe_dump(config, sort_keys=False))
