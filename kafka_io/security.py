"""Kafka connection security, passed through to every client streamrec makes.

One frozen `KafkaSecurity` holds the protocol (PLAINTEXT, SSL, SASL_PLAINTEXT,
SASL_SSL), the SSL files and the SASL credentials; `client_kwargs()` turns it into
kafka-python settings and `librdkafka_config()` into confluent-kafka's, and the
adapters apply them to the consumer,
the producer and the admin client alike, so no client can be left on plaintext.
The `--security-protocol`/`--ssl-*`/`--sasl-*` flags that build it live in
`streamrec.cli.flags`; a combination that cannot work is refused here, at
construction, naming the flag (and `STREAMREC_*` variable) to fix.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from streamrec.common.errors import ConfigError
from streamrec.common.settings import env_name

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def flag_of(name: str) -> str:
    """The command-line flag of a `KafkaSecurity` field: ssl_cafile -> --ssl-cafile."""
    return "--" + name.replace("_", "-")


def named(name: str) -> str:
    """A field as the user set it: flag and environment variable."""
    return f"{flag_of(name)} ({env_name(flag_of(name))})"


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients authenticate and encrypt; the default is plaintext without auth.

    Construction refuses settings the protocol would silently ignore (a CA file
    with PLAINTEXT, SASL credentials without SASL) and incomplete ones (SASL without
    a username or password, a client certificate without its key): ConfigError.
    """

    protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: Path | None = None  # CA bundle that signed the brokers' certificates
    ssl_certfile: Path | None = None  # client certificate (mutual TLS)
    ssl_keyfile: Path | None = None  # client private key (mutual TLS)
    ssl_password: str | None = field(default=None, repr=False)  # of an encrypted client key
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in get_args(SecurityProtocol):
            raise ConfigError(f"--security-protocol must be one of "
                              f"{', '.join(get_args(SecurityProtocol))}, got {self.protocol!r}")
        if self.sasl_mechanism is not None and self.sasl_mechanism not in get_args(SaslMechanism):
            raise ConfigError(f"--sasl-mechanism must be one of "
                              f"{', '.join(get_args(SaslMechanism))}, got {self.sasl_mechanism!r}")
        for name in SSL_FILES:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        ssl_set = [name for name in (*SSL_FILES, "ssl_password") if getattr(self, name)]
        if not self.ssl_check_hostname:
            ssl_set.append("no_ssl_check_hostname")
        sasl_set = [name for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                    if getattr(self, name)]
        for names, protocols in ((ssl_set, TLS_PROTOCOLS), (sasl_set, SASL_PROTOCOLS)):
            if names and self.protocol not in protocols:
                raise ConfigError(
                    f"{', '.join(named(n) for n in names)} has no effect with "
                    f"--security-protocol {self.protocol}: use {' or '.join(protocols)}, "
                    "or drop the setting")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            given, missing = (("ssl_certfile", "ssl_keyfile") if self.ssl_keyfile is None
                              else ("ssl_keyfile", "ssl_certfile"))
            raise ConfigError(
                f"{flag_of(given)} needs {named(missing)}: a client certificate (mutual TLS) "
                "takes both (a PEM file holding both may be given to both)")
        if self.ssl_password is not None and self.ssl_keyfile is None:
            raise ConfigError("--ssl-password decrypts the client key: give --ssl-keyfile "
                              "and --ssl-certfile too, or drop it")
        if self.protocol in SASL_PROTOCOLS:
            missing = [n for n in ("sasl_username", "sasl_password") if not getattr(self, n)]
            if missing:
                raise ConfigError(
                    f"--security-protocol {self.protocol} needs "
                    f"{' and '.join(named(n) for n in missing)} "
                    f"(mechanism {self.sasl_mechanism or 'PLAIN'})")

    @property
    def uses_tls(self) -> bool:
        """True for SSL and SASL_SSL."""
        return self.protocol in TLS_PROTOCOLS

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
        if self.uses_tls:
            kwargs["ssl_check_hostname"] = self.ssl_check_hostname
            for name in SSL_FILES:
                value = getattr(self, name)
                if value is not None:
                    kwargs[name] = str(value)
            if self.ssl_password is not None:
                kwargs["ssl_password"] = self.ssl_password
        if self.protocol in SASL_PROTOCOLS:
            kwargs["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def librdkafka_config(self) -> dict[str, str]:
        """confluent-kafka (librdkafka) properties for the same security setup."""
        config = {"security.protocol": self.protocol}
        if self.uses_tls:
            # librdkafka checks the broker's name only when asked to ("https")
            config["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none")
            for name, key in (("ssl_cafile", "ssl.ca.location"),
                              ("ssl_certfile", "ssl.certificate.location"),
                              ("ssl_keyfile", "ssl.key.location")):
                value = getattr(self, name)
                if value is not None:
                    config[key] = str(value)
            if self.ssl_password is not None:
                config["ssl.key.password"] = self.ssl_password
        if self.protocol in SASL_PROTOCOLS:
            config["sasl.mechanism"] = self.sasl_mechanism or "PLAIN"
            config["sasl.username"] = self.sasl_username or ""
            config["sasl.password"] = self.sasl_password or ""
        return config

    def check_files(self) -> None:
        """Raise ConfigError naming the flag of an SSL file that is missing or unreadable."""
        for name in SSL_FILES:
            path = getattr(self, name)
            if path is None:
                continue
            if not path.is_file():
                raise ConfigError(f"{named(name)}: {path} does not exist or is not a file")
            try:
                path.open("rb").close()
            except OSError as exc:
                raise ConfigError(f"{named(name)}: cannot read {path}: {exc}") from exc

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS client context kafka-python 3 builds from the same settings.

        Used for the pre-flight handshake, so a wrong CA fails there with the SSL
        error instead of as a bootstrap timeout. ConfigError when a file cannot be
        loaded (not PEM, wrong key password).
        """
        self.check_files()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = self.ssl_check_hostname
        try:
            if self.ssl_cafile is not None:
                ctx.load_verify_locations(str(self.ssl_cafile))
            else:
                ctx.load_default_certs()
        except ssl.SSLError as exc:
            raise ConfigError(f"{named('ssl_cafile')}: cannot load {self.ssl_cafile} as PEM "
                              f"CA certificates: {exc}") from exc
        if self.ssl_certfile is not None:
            try:
                ctx.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile),
                                    password=self.ssl_password)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"cannot load the client certificate {self.ssl_certfile} with key "
                    f"{self.ssl_keyfile}: {exc} (a PEM certificate and its key; an encrypted "
                    "key needs --ssl-password)") from exc
        return ctx


def principal_of(security: KafkaSecurity) -> str:
    """The principal the broker authorizes for these settings: what an ACL must name."""
    if security.protocol in SASL_PROTOCOLS:
        return f"User:{security.sasl_username}"
    if security.ssl_certfile is not None:
        return "User:<the distinguished name of --ssl-certfile>"
    return "User:ANONYMOUS"
