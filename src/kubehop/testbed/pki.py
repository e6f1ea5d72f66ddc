"""Certificates and kubeconfigs of one testbed cluster.

One CA per cluster, as separate clusters would have; ECDSA P-256 keys because they are fast to
make and every Kubernetes component accepts them. Private keys are written with mode 0600 and
never printed.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubehop.testbed.layout import CLUSTER_DOMAIN, ClusterLayout

_VALIDITY = dt.timedelta(days=365)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate to issue: file stem, common name, organisations."""

    stem: str
    common_name: str
    organizations: tuple[str, ...] = ()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


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
        self._ca_key: ec.EllipticCurvePrivateKey | None = None
        self._ca_cert: x509.Certificate | None = None

    @property
    def ca_cert_path(self) -> Path:
        return self.dir / "ca.crt"

    def cert_path(self, stem: str) -> Path:
        return self.dir / f"{stem}.crt"

    def key_path(self, stem: str) -> Path:
        return self.dir / f"{stem}.key"

    def create_ca(self) -> None:
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"kubehop-{self.cluster.name}-ca")
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
        self._ca_key, self._ca_cert = key, cert
        _write_private(self.key_path("ca"), _key_pem(key))
        self.ca_cert_path.write_bytes(_cert_pem(cert))

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
    ) -> None:
        """Issue a leaf certificate signed by this cluster's CA."""
        if self._ca_key is None or self._ca_cert is None:
            raise RuntimeError("ClusterPKI.create_ca() must run before issue()")
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
            .issuer_name(self._ca_cert.subject)
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
        cert = builder.sign(self._ca_key, hashes.SHA256())
        _write_private(self.key_path(stem), _key_pem(key))
        self.cert_path(stem).write_bytes(_cert_pem(cert))

    def create_service_account_keys(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(self.key_path("service-account"), _key_pem(key))
        self.dir.joinpath("service-account.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def create_all(self, clients: list[ClientIdentity]) -> None:
        """Everything a cluster needs: CA, API server and kubelet serving certs, client certs."""
        c = self.cluster
        self.dir.mkdir(parents=True, exist_ok=True)
        self.create_ca()
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
            ips=(c.api_service_ip, c.node_ip, ipaddress.IPv4Address("127.0.0.1")),
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
    """Write a kubeconfig with mode 0600: it holds a private key."""
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())
