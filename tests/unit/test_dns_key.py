"""The TSIG key file: BIND's format, quoted or bare names; anything else a one-line DnsError.

The fuzz tests feed the parser arbitrary bytes, arbitrary text and shuffled BIND tokens: each
input either gives a key that really signs an update or a one-line error without the secret.
"""

from __future__ import annotations

from pathlib import Path

import dns.tsigkeyring
import dns.update
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubehop.adapters.dns import DnsError, read_tsig_key
from kubehop.errors import KubehopError

SECRET = "c2VjcmV0LWZvci10aGUtdGVzdC1vbmx5Ly8vKys="  # base64 with '/' and '+'
KEYGEN = f'key "kubehop-tsig" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRET}";\n}};\n'


def _read(tmp_path: Path, text: str | bytes) -> tuple[str, str, str]:
    path = tmp_path / "tsig.key"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return read_tsig_key(str(path))


def test_tsig_keygen_output(tmp_path: Path) -> None:
    assert _read(tmp_path, KEYGEN) == ("kubehop-tsig", "hmac-sha256.", SECRET)


@pytest.mark.parametrize(
    "text",
    [
        f"key kubehop-tsig {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};",
        f'# tsig-keygen\nkey kubehop-tsig {{ // ours\n algorithm "hmac-sha256";\n'
        f" /* the secret */ secret {SECRET}; }};\n",
    ],
    ids=["unquoted-name", "comments-and-bare-words"],
)
def test_unquoted_name_reads_as_bind_reads_it(tmp_path: Path, text: str) -> None:
    assert _read(tmp_path, text) == ("kubehop-tsig", "hmac-sha256.", SECRET)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "0 keys"),
        (KEYGEN + KEYGEN, "2 keys"),
        ('key { algorithm hmac-sha256; secret "x"; };', "expected the key's name, found '{'"),
        (KEYGEN.replace("hmac-sha256", "hmac-rot13"), "unknown algorithm 'hmac-rot13'"),
        (KEYGEN.replace(SECRET, "not base64!"), "secret is not base64"),
        (KEYGEN.replace(f'\tsecret "{SECRET}";\n', ""), "lacks its secret"),
        (KEYGEN.replace('";', '"'), "expected ';' after the secret"),
        (KEYGEN.replace('"kubehop-tsig"', '"a..b"'), "not a DNS name"),
        ('key "k" { algorithm hmac-sha256; secret "abc', "unterminated quoted string on line 1"),
    ],
)
def test_malformed_key_file_is_one_clear_line(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(DnsError, match="is not a usable TSIG key file") as info:
        _read(tmp_path, text)
    assert fragment in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    assert SECRET not in str(info.value)


def test_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(DnsError, match="cannot read the TSIG key file"):
        read_tsig_key(str(tmp_path / "nope.key"))
    with pytest.raises(DnsError, match="not UTF-8"):
        _read(tmp_path, b"\xff\xfe key")


# --- fuzzing --------------------------------------------------------------------------------

_PIECES = ["key", '"kubehop-tsig"', "kubehop-tsig", "{", "}", ";", "algorithm", "hmac-sha256",
           "HMAC-MD5", "secret", f'"{SECRET}"', SECRET, '"', "#", "//", "/*", "*/", "\n", " ",
           "\t", "''", "k.", ".", "..", '"a..b"', "hmac-sha512-256", '""', "=", "\\"]

_key_like = st.lists(st.sampled_from(_PIECES) | st.text(max_size=8), max_size=30).map(" ".join)


def _assert_usable_or_one_line_error(path: Path, data: str | bytes) -> None:
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    try:
        name, algorithm, secret = read_tsig_key(str(path))
    except KubehopError as exc:
        assert isinstance(exc, DnsError)
        assert len(str(exc).splitlines()) == 1, str(exc)
        return
    # What it accepts really signs an update, as kubehop.adapters.dns.DnsZone does with it.
    keyring = dns.tsigkeyring.from_text({name: secret})
    update = dns.update.UpdateMessage("testnetwork.internal", keyring=keyring,
                                      keyalgorithm=algorithm)
    update.replace("probe", 5, "A", "10.0.0.1")
    assert update.to_wire()


_FUZZ = settings(max_examples=400, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(data=_key_like)
def test_fuzz_bind_like_text(tmp_path: Path, data: str) -> None:
    _assert_usable_or_one_line_error(tmp_path / "k", data)


@_FUZZ
@given(data=st.text() | st.binary())
def test_fuzz_arbitrary_content(tmp_path: Path, data: str | bytes) -> None:
    _assert_usable_or_one_line_error(tmp_path / "k", data)
