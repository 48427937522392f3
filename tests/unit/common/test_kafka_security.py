"""KEFU_KAFKA_* security settings → FastStream ``security=`` and raw aiokafka options (libs/common/kafka_security.py),
and the broker every service builds carries them."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from libs.common.broker import make_broker
from libs.common.kafka_security import kafka_client_options, kafka_security
from libs.common.settings import KefuSettings


def _pem_pair(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key: usable as CA file and as client certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _settings(**kw: object) -> KefuSettings:
    return KefuSettings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    settings = _settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert kafka_security(settings) is None and kafka_client_options(settings) == {}


@pytest.mark.parametrize(
    ("mechanism", "cls"), [("PLAIN", SASLPlaintext), ("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512)]
)
def test_sasl_plaintext(mechanism: str, cls: type) -> None:
    settings = _settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="kefu",
        kafka_sasl_password="s3cret",
    )
    security = kafka_security(settings)
    assert type(security) is cls and not security.use_ssl and security.ssl_context is None
    assert kafka_client_options(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "ssl_context": None,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "kefu",
        "sasl_plain_password": "s3cret",
    }
    assert "s3cret" not in repr(settings)  # the password is a SecretStr


def test_sasl_ssl_with_a_private_ca(tmp_path: Path) -> None:
    ca, _ = _pem_pair(tmp_path)
    settings = _settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="kefu",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=ca,
    )
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-256"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "kafka.test"),),)]


def test_mutual_tls(tmp_path: Path) -> None:
    cert, key = _pem_pair(tmp_path)
    settings = _settings(
        kafka_security_protocol="SSL", kafka_ssl_cafile=cert, kafka_ssl_certfile=cert, kafka_ssl_keyfile=key
    )
    security = kafka_security(settings)
    assert type(security) is BaseSecurity and security.use_ssl
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SSL" and isinstance(options["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in options


def test_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KEFU_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KEFU_KAFKA_SASL_USERNAME", "kefu")
    monkeypatch.setenv("KEFU_KAFKA_SASL_PASSWORD", "pw")
    assert kafka_client_options(_settings())["sasl_mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs KEFU_KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"}, "go together"),
        ({"kafka_ssl_cafile": "/ca.pem"}, "does not use TLS"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_incomplete_or_unknown_settings_are_refused_at_start(kw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(**kw)


def test_every_services_broker_carries_the_security(tmp_path: Path) -> None:
    settings = _settings(
        home=tmp_path,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="kefu",
        kafka_sasl_password="s3cret",
    )
    broker = make_broker(settings, service="test")
    # What FastStream hands to aiokafka's producer and consumers.
    assert broker._connection_kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert broker._connection_kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert broker._connection_kwargs["sasl_plain_password"] == "s3cret"
