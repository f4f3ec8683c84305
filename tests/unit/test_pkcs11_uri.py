"""RFC 7512 URIs as ``--key`` takes them: the parts airpack uses, where the PIN comes from, one clear line for
what is missing (the token itself is exercised in tests/integration/test_pkcs11.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airpack.errors import KeyFileError
from airpack.keys import is_token_uri, load_signing_key
from airpack.keys.pkcs11 import PIN_ENV, parse_uri

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def test_the_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PIN_ENV, raising=False)
    u = parse_uri(f"pkcs11:token=My%20Token;object=release-2026;id=%01%ab;type=private"
                  f"?module-path={MODULE}&pin-value=12%2634")
    assert (u.module, u.token, u.label, u.key_id, u.pin) == (MODULE, "My Token", "release-2026", b"\x01\xab",
                                                               "12&34")
    assert "pin-value" not in u.text and "12" not in u.text  # the PIN is never shown


def test_the_pin_from_a_file_or_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PIN_ENV, "from-env")
    assert parse_uri(f"pkcs11:object=k?module-path={MODULE}").pin == "from-env"
    (tmp_path / "pin").write_text("from-file\n")
    assert parse_uri(f"pkcs11:object=k?module-path={MODULE}&pin-source=file:{tmp_path / 'pin'}").pin == "from-file"
    assert parse_uri(f"pkcs11:object=k?module-path={MODULE}&pin-value=uri").pin == "uri"
    monkeypatch.delenv(PIN_ENV)
    assert parse_uri(f"pkcs11:object=k?module-path={MODULE}").pin is None


@pytest.mark.parametrize(("uri", "words"), [
    ("pkcs11:token=t;object=k", "no module-path"),
    (f"pkcs11:token=t?module-path={MODULE}", "object=LABEL or id="),
    (f"pkcs11:token;object=k?module-path={MODULE}", "is not name=value"),
    (f"pkcs11:object=k?module-path={MODULE}&pin-source=file:/nonexistent/pin", "cannot read pin-source"),
])
def test_what_is_missing_is_one_line(uri: str, words: str) -> None:
    with pytest.raises(KeyFileError, match=words) as info:
        parse_uri(uri)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_a_missing_module_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PIN_ENV, "1234")
    with pytest.raises(KeyFileError, match=r"cannot load the PKCS#11 module /nonexistent/lib\.so"):
        load_signing_key("pkcs11:token=t;object=k?module-path=/nonexistent/lib.so")


def test_only_pkcs11_uris_go_to_the_token(tmp_path: Path) -> None:
    assert is_token_uri("pkcs11:object=k") and not is_token_uri(tmp_path / "pkcs11.key")
    with pytest.raises(KeyFileError, match="cannot read key"):
        load_signing_key(tmp_path / "pkcs11.key")
