"""The private DNS zone: RFC 2136 updates signed with TSIG (dnspython), and checks of what the
authoritative server answers. The TSIG secret is read from its file and never printed."""

from __future__ import annotations

from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from kubehop.domain.model import DnsZoneInfo
from kubehop.errors import KubehopError

TTL = 5


class DnsError(KubehopError):
    """The DNS server refused or did not answer; the message says which record."""


def read_tsig_key(path: str) -> tuple[str, str, str]:
    """(name, algorithm, secret) from a BIND key file (``tsig-keygen`` format)."""
    name = algorithm = secret = ""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DnsError(f"cannot read the TSIG key file {path}: {exc.strerror}") from exc
    for raw in text.splitlines():
        line = raw.strip().rstrip(";")
        if line.startswith("key "):
            name = line.split('"')[1]
        elif line.startswith("algorithm "):
            algorithm = line.split()[1]
        elif line.startswith("secret "):
            secret = line.split('"')[1]
    if not (name and algorithm and secret):
        raise DnsError(f"{path} is not a TSIG key file (want key \"name\" {{ algorithm ...; "
                       "secret \"...\"; }};)")
    return name, algorithm, secret


class DnsZone:
    def __init__(self, info: DnsZoneInfo) -> None:
        self.info = info
        name, algorithm, secret = read_tsig_key(info.key_file)
        self._keyring = dns.tsigkeyring.from_text({name: secret})
        self._algorithm = algorithm

    def _send(self, update: dns.update.UpdateMessage, what: str) -> None:
        try:
            reply = dns.query.tcp(update, self.info.server, port=self.info.port, timeout=5)
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"DNS server {self.info.server} refused {what}: "
                           f"{type(exc).__name__} {exc}") from exc
        if reply.rcode() != dns.rcode.NOERROR:
            raise DnsError(f"DNS server {self.info.server} refused {what}: "
                           f"{dns.rcode.to_text(reply.rcode())}")

    def set_a(self, fqdn: str, address: str, *, ttl: int = TTL) -> None:
        update = dns.update.UpdateMessage(self.info.zone, keyring=self._keyring,
                                          keyalgorithm=self._algorithm)
        update.replace(fqdn + ".", ttl, "A", address)
        self._send(update, f"the update {fqdn} A {address}")

    def delete(self, fqdn: str) -> None:
        update = dns.update.UpdateMessage(self.info.zone, keyring=self._keyring,
                                          keyalgorithm=self._algorithm)
        update.delete(fqdn + ".")
        self._send(update, f"deleting {fqdn}")

    def lookup_a(self, fqdn: str) -> list[str]:
        """What the authoritative server answers now (no cache in between)."""
        query = dns.message.make_query(fqdn + ".", dns.rdatatype.A)
        try:
            reply = dns.query.udp(query, self.info.server, port=self.info.port, timeout=3)
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"DNS server {self.info.server} did not answer for {fqdn}: "
                           f"{type(exc).__name__}") from exc
        return sorted(str(r) for rrset in reply.answer for r in rrset
                      if rrset.rdtype == dns.rdatatype.A)

    def check_zone(self) -> None:
        """Fail clearly when the zone is not served there."""
        query = dns.message.make_query(self.info.zone + ".", dns.rdatatype.SOA)
        try:
            reply = dns.query.udp(query, self.info.server, port=self.info.port, timeout=3)
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(f"DNS server {self.info.server}:{self.info.port} does not answer "
                           f"({type(exc).__name__}); check the inventory's dns section") from exc
        if not reply.answer:
            raise DnsError(f"DNS server {self.info.server} does not serve zone {self.info.zone}; "
                           "check the inventory's dns section")
