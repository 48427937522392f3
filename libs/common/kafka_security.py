"""Kafka TLS / SASL from ``KEFU_KAFKA_*`` settings, in the two shapes kafka clients take.

FastStream's ``KafkaBroker`` (every service, ``kefu dlq replay``) takes a ``faststream.security`` object; raw
aiokafka clients in the CLI (``kefu dlq list``, ``kefu events tail``) take keyword arguments. Both come from the
same settings here, and the keyword arguments are FastStream's own translation of the object, so a service and the
CLI always connect the same way.
"""

from __future__ import annotations

import ssl
from typing import Any

from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from libs.common.settings import KefuSettings

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def ssl_context(settings: KefuSettings) -> ssl.SSLContext:
    """Verifying TLS context: the given CA (else the system's), and a client certificate for mutual TLS."""
    context = ssl.create_default_context(cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile:
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile))
    return context


def kafka_security(settings: KefuSettings) -> BaseSecurity | None:
    """FastStream's ``security=`` for ``KafkaBroker``; None for PLAINTEXT (the embedded broker)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context)
    assert settings.kafka_sasl_username and settings.kafka_sasl_password  # checked by KefuSettings
    return _SASL[settings.kafka_sasl_mechanism](
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=context is not None,
    )


def kafka_client_options(settings: KefuSettings) -> dict[str, Any]:
    """Keyword arguments for a raw aiokafka client (``AIOKafkaConsumer``/``Producer``/``AdminClient``)."""
    security = kafka_security(settings)
    return parse_security(security) if security is not None else {}
