"""The stack's identities without running it: the CA and Trino's certificate, the account
registry behind ``mesh users`` and Trino's password file, the client settings."""

from __future__ import annotations

import ipaddress
import json
import ssl
import stat

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mesh_assets.stack import accounts, tls
from mesh_assets.stack.layout import StackError, StackLayout

PASSWORD = "correct horse battery"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def layout(mesh_home) -> StackLayout:
    layout = StackLayout.from_env()
    layout.ensure_dirs()
    return layout


def test_the_ca_signs_a_server_certificate_for_loopback_kept_private(tmp_path):
    made = tls.ensure(tmp_path / "tls", "127.0.0.1")
    assert made == ["tls/ca.pem", "tls/trino.pem"]
    assert mode(tmp_path / "tls") == 0o700
    for name in ("ca.pem", "ca-key.pem", "trino.pem"):
        assert mode(tmp_path / "tls" / name) == 0o600
    ca = x509.load_pem_x509_certificate((tmp_path / "tls" / "ca.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((tmp_path / "tls" / "trino.pem").read_bytes())
    server = chain[0]
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    # the keystore Trino reads holds the key and the chain; Python's TLS accepts them together
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls" / "trino.pem")
    assert tls.ensure(tmp_path / "tls", "127.0.0.1") == []  # made once


def test_a_server_certificate_near_its_end_is_made_again(tmp_path, monkeypatch):
    tls.ensure(tmp_path, "127.0.0.1")
    before = (tmp_path / "trino.pem").read_bytes()
    monkeypatch.setattr(tls, "RENEW_BEFORE", tls.dt.timedelta(days=tls.SERVER_DAYS + 1))
    assert tls.ensure(tmp_path, "127.0.0.1") == ["tls/trino.pem"]
    assert (tmp_path / "trino.pem").read_bytes() != before
    assert isinstance(x509.load_pem_x509_certificates(before)[0].public_key(), ec.EllipticCurvePublicKey)


def test_service_accounts_get_password_files_and_hashes_trino_accepts(layout):
    made = accounts.ensure_service_accounts(layout, ["fleet", "operations"])
    assert made == ["mesh", "domain-fleet", "domain-operations", "superset"]
    assert accounts.ensure_service_accounts(layout, ["fleet", "operations"]) == []
    lines = dict(line.split(":", 1) for line in accounts.password_file(layout).read_text().splitlines())
    assert sorted(lines) == ["domain-fleet", "domain-operations", "mesh", "superset"]
    for name, hashed in lines.items():
        assert hashed.startswith("$2y$10$")  # the spelling Trino's file authenticator requires
        password = (accounts.accounts_dir(layout) / name).read_text().strip()
        assert len(password) == 32 and bcrypt.checkpw(
            password.encode(), hashed.replace("$2y$", "$2b$", 1).encode()
        )
    for path in (
        accounts.password_file(layout),
        accounts.registry_file(layout),
        accounts.accounts_dir(layout) / "mesh",
    ):
        assert mode(path) == 0o600
    assert accounts.memberships(layout) == {
        "domain-fleet": ("domain_fleet",),
        "domain-operations": ("domain_operations",),
        "superset": ("analyst",),  # Superset reads as an analyst: the contracts' policy applies
    }


def test_people_are_added_changed_and_removed(layout):
    accounts.ensure_service_accounts(layout, ["fleet"])
    accounts.add("dana", ["analyst", "pii_reader", "analyst"], PASSWORD, layout)
    assert [(a.name, a.groups, a.service) for a in accounts.accounts(layout)] == [
        ("dana", ("analyst", "pii_reader"), False),
        ("domain-fleet", ("domain_fleet",), True),
        ("mesh", (), True),
        ("superset", ("analyst",), True),
    ]
    registry = accounts.registry_file(layout).read_text()
    assert PASSWORD not in registry and PASSWORD not in accounts.password_file(layout).read_text()
    old = json.loads(registry)["accounts"]["dana"]["hash"]
    accounts.passwd("dana", "another long password", layout)
    new = json.loads(accounts.registry_file(layout).read_text())["accounts"]["dana"]["hash"]
    assert new != old and bcrypt.checkpw(b"another long password", new.replace("$2y$", "$2b$", 1).encode())
    accounts.remove("dana", layout)
    assert "dana" not in accounts.password_file(layout).read_text()
    assert "dana" not in accounts.memberships(layout)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda lay: accounts.add("dana", [], "short", lay), "too short: at least 12"),
        (lambda lay: accounts.add("dana", [], "a:colon password", lay), "may not contain ':'"),
        (lambda lay: accounts.add("-dana", [], PASSWORD, lay), "user name '-dana'"),
        (lambda lay: accounts.add("dana", ["Analysts"], PASSWORD, lay), "group 'Analysts': lower_snake_case"),
        (
            lambda lay: accounts.add("dana", ["domain_fleet"], PASSWORD, lay),
            "belongs to a domain's service account",
        ),
        (lambda lay: accounts.add("mesh", [], PASSWORD, lay), "reserved for the platform's service accounts"),
        (
            lambda lay: accounts.add("superset", [], PASSWORD, lay),
            "reserved for the platform's service accounts",
        ),
        (
            lambda lay: accounts.add("domain-x", [], PASSWORD, lay),
            "reserved for the platform's service accounts",
        ),
        (lambda lay: accounts.remove("nobody", lay), "no user 'nobody' on this stack"),
        (lambda lay: accounts.remove("domain-fleet", lay), "is a service account of the platform"),
        (lambda lay: accounts.passwd("mesh", PASSWORD, lay), "is a service account of the platform"),
    ],
)
def test_refusals_say_why(layout, call, message):
    accounts.ensure_service_accounts(layout, ["fleet"])
    with pytest.raises(StackError, match=message):
        call(layout)


def test_a_user_cannot_be_added_twice(layout):
    accounts.add("dana", [], PASSWORD, layout)
    with pytest.raises(StackError, match="user 'dana' exists: `mesh users passwd dana`"):
        accounts.add("dana", ["analyst"], PASSWORD, layout)


def test_the_cli_adds_from_a_password_file_and_lists_without_secrets(layout, tmp_path, capsys):
    from mesh_assets.cli import main

    accounts.ensure_service_accounts(layout, ["fleet"])
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    assert main(["users", "add", "dana", "--group", "analyst", "--password-file", str(secret)]) == 0
    assert main(["users", "list"]) == 0
    out = capsys.readouterr().out
    assert "user dana added (analyst); Trino accepts it within 5s" in out
    assert "dana                     person   analyst" in out
    assert "domain-fleet             service  domain_fleet" in out
    assert PASSWORD not in out and "$2y$" not in out
    groups = (layout.access_dir / "trino-groups.txt").read_text().splitlines()
    assert "analyst:alice,carol,dana,superset" in groups and "domain_fleet:domain-fleet" in groups
    assert main(["users", "remove", "dana"]) == 0
    assert "analyst:alice,carol,superset" in (layout.access_dir / "trino-groups.txt").read_text().splitlines()
    assert main(["users", "remove", "dana"]) == 1
    assert "mesh users remove: no user 'dana' on this stack" in capsys.readouterr().err


def test_trino_credentials_of_a_domain_come_from_its_account_file(monkeypatch, tmp_path):
    from mesh_assets import settings

    (tmp_path / "domain-fleet").write_text("fleet-secret\n")
    monkeypatch.setenv("MESH_TRINO_USER", "mesh")
    monkeypatch.setenv("MESH_TRINO_PASSWORD", "mesh-secret")
    monkeypatch.setenv("MESH_TRINO_ACCOUNTS_DIR", str(tmp_path))
    assert settings.trino_credentials("fleet") == ("domain-fleet", "fleet-secret")
    assert settings.trino_credentials("weather") == ("mesh", "mesh-secret")  # no file: the location's own
    assert settings.trino_credentials() == ("mesh", "mesh-secret")
    monkeypatch.delenv("MESH_TRINO_HTTPS_PORT", raising=False)
    monkeypatch.setenv("MESH_TRINO_PORT", "28080")
    assert settings.trino_settings().port == 28080
    monkeypatch.setenv("MESH_TRINO_HTTPS_PORT", "28443")
    assert settings.trino_settings().port == 28443
