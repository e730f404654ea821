"""Kafka connection security, passed through to every client streamrec makes.

One frozen `KafkaSecurity` holds the protocol (PLAINTEXT, SSL, SASL_PLAINTEXT,
SASL_SSL), the SSL files and the SASL credentials; `client_kwargs()` turns it into
kafka-python settings, and `worker/kafka_clients.py` applies them to the consumer,
the producer and the admin client alike, so no client can be left on plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients authenticate and encrypt; the default is plaintext without auth."""

    protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: Path | None = None  # CA bundle that signed the brokers' certificates
    ssl_certfile: Path | None = None  # client certificate (mutual TLS)
    ssl_keyfile: Path | None = None  # client private key (mutual TLS)
    ssl_password: str | None = field(default=None, repr=False)  # of an encrypted client key
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    def redacted(self) -> dict[str, Any]:
        """The settings for logs: passwords replaced by '***'."""
        doc = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("ssl_password", "sasl_password"):
            if doc[name] is not None:
                doc[name] = "***"
        return doc

    def client_kwargs(self) -> dict[str, Any]:
        """kafka-python keyword arguments for this security setup."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, name)
                if value is not None:
                    kwargs[name] = str(value)
            if self.ssl_password is not None:
                kwargs["ssl_password"] = self.ssl_password
        if self.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs
