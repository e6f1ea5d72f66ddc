"""The private DNS zone: RFC 2136 updates signed with TSIG (dnspython), and checks of what the
authoritative server answers. The TSIG secret is read from its file and never printed."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import dns.exception
import dns.message
import dns.name
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


# One BIND lexer token: blanks and comments (skipped), a quoted string, punctuation, a word.
_TOKEN = re.compile(
    r"(?P<skip>\s+|\#[^\n]*|//[^\n]*|/\*.*?\*/)"
    r'|"(?P<string>[^"\n]*)"'
    r"|(?P<punct>[{};])"
    r'|(?P<word>(?:[^\s{};"#/]|/(?![/*]))+)',
    re.DOTALL,
)

# BIND's algorithm names, as dnspython names them.
TSIG_ALGORITHMS = {
    "hmac-md5": str(dns.tsig.HMAC_MD5),
    "hmac-sha1": str(dns.tsig.HMAC_SHA1),
    "hmac-sha224": str(dns.tsig.HMAC_SHA224),
    "hmac-sha256": str(dns.tsig.HMAC_SHA256),
    "hmac-sha256-128": str(dns.tsig.HMAC_SHA256_128),
    "hmac-sha384": str(dns.tsig.HMAC_SHA384),
    "hmac-sha384-192": str(dns.tsig.HMAC_SHA384_192),
    "hmac-sha512": str(dns.tsig.HMAC_SHA512),
    "hmac-sha512-256": str(dns.tsig.HMAC_SHA512_256),
}

_WANT = 'want key "name" { algorithm hmac-sha256; secret "base64"; };'


class _Malformed(Exception):  # noqa: N818 - internal, becomes a DnsError naming the file
    pass


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, line) for each token; a quoted string keeps ``//`` and ``#`` (base64 has
    ``/``) and loses its quotes, so quoted and bare names read alike, as BIND reads them."""
    found: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        line = text.count("\n", 0, pos) + 1
        if match is None:
            what = "an unterminated quoted string" if text[pos] == '"' else (
                "an unterminated comment" if text.startswith("/*", pos) else "a stray character")
            raise _Malformed(f"{what} on line {line}")
        kind = match.lastgroup or "skip"
        if kind != "skip":
            found.append((kind, match.group(kind), line))
        pos = match.end()
    return found


def _describe(token: tuple[str, str, int] | None) -> str:
    """A token for an error message, without its text (it may be part of the secret)."""
    if token is None:
        return "the end of the file"
    kind, value, line = token
    if kind == "punct":
        return f"'{value}' on line {line}"
    shown = "a quoted string" if kind == "string" else "a word"
    return f"{shown} on line {line}"


def _parse_keys(text: str) -> list[dict[str, str]]:
    tokens = _tokens(text)
    pos = 0

    def take(*kinds: str, punct: str = "", what: str) -> str:
        nonlocal pos
        token = tokens[pos] if pos < len(tokens) else None
        if token is None or token[0] not in kinds or (punct and token[1] != punct):
            raise _Malformed(f"expected {what}, found {_describe(token)}")
        pos += 1
        return token[1]

    keys: list[dict[str, str]] = []
    while pos < len(tokens):
        if tokens[pos][:2] != ("word", "key"):
            raise _Malformed(f"expected 'key', found {_describe(tokens[pos])}")
        pos += 1
        key = {"name": take("string", "word", what="the key's name")}
        take("punct", punct="{", what="'{'")
        while pos < len(tokens) and tokens[pos][:2] != ("punct", "}"):
            field = tokens[pos]
            if field[0] != "word" or field[1] not in ("algorithm", "secret"):
                raise _Malformed(f"expected 'algorithm' or 'secret', found {_describe(field)}")
            if field[1] in key:
                raise _Malformed(f"'{field[1]}' is given twice (line {field[2]})")
            pos += 1
            key[field[1]] = take("string", "word", what=f"the {field[1]}")
            take("punct", punct=";", what=f"';' after the {field[1]}")
        take("punct", punct="}", what="'}'")
        take("punct", punct=";", what="';' after '}'")
        keys.append(key)
    return keys


def read_tsig_key(path: str) -> tuple[str, str, str]:
    """(name, algorithm, secret) from a BIND key file (``tsig-keygen`` format), checked so
    that signing with it works: a valid name, an algorithm dnspython knows (returned in
    dnspython's spelling) and a non-empty base64 secret. The key name may be quoted or not, as
    BIND allows; anything else is a one-line :class:`DnsError` that never shows the secret."""
    try:
        text = Path(path).read_bytes().decode()
    except OSError as exc:
        raise DnsError(f"cannot read the TSIG key file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DnsError(f"{path} is not a TSIG key file (not UTF-8 text); {_WANT}") from exc
    try:
        keys = _parse_keys(text)
        if len(keys) != 1:
            raise _Malformed(f"it holds {len(keys)} keys, kubehop needs exactly one")
        key = keys[0]
        missing = [f for f in ("algorithm", "secret") if f not in key]
        if missing:
            raise _Malformed(f"the key lacks its {' and '.join(missing)}")
        name, secret = key["name"], key["secret"]
        algorithm = TSIG_ALGORITHMS.get(key["algorithm"].lower())
        if algorithm is None:
            raise _Malformed(f"unknown algorithm {key['algorithm'][:40]!r} (use one of "
                             f"{', '.join(TSIG_ALGORITHMS)})")
        try:
            dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise _Malformed(f"the key name {name[:60]!r} is not a DNS name "
                             f"({type(exc).__name__})") from exc
        try:
            decoded = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Malformed("the secret is not base64") from exc
        if not decoded:
            raise _Malformed("the secret is empty")
    except _Malformed as exc:
        raise DnsError(f"{path} is not a usable TSIG key file: {exc}; {_WANT}") from exc
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
