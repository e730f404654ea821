"""Kafka connection security, passed through to every client streamrec makes.

One frozen `KafkaSecurity` holds the protocol (PLAINTEXT, SSL, SASL_PLAINTEXT,
SASL_SSL), the SSL files and the SASL credentials; `client_kwargs()` turns it into
kafka-python settings, and `worker/kafka_clients.py` applies them to the consumer,
the producer and the admin client alike, so no client can be left on plaintext.
The `--security-protocol`/`--ssl-*`/`--sasl-*` flags (each with a `STREAMREC_*`
environment fallback) live here too, in one place for every command that talks to
Kafka, and a combination that cannot work is refused at start with the flag to fix.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from streamrec.common.errors import ConfigError
from streamrec.common.settings import env_default, env_name

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def flag_of(name: str) -> str:
    """The command-line flag of a `KafkaSecurity` field: ssl_cafile -> --ssl-cafile."""
    return "--" + name.replace("_", "-")


def _named(name: str) -> str:
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
                    f"{', '.join(_named(n) for n in names)} has no effect with "
                    f"--security-protocol {self.protocol}: use {' or '.join(protocols)}, "
                    "or drop the setting")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            given, missing = (("ssl_certfile", "ssl_keyfile") if self.ssl_keyfile is None
                              else ("ssl_keyfile", "ssl_certfile"))
            raise ConfigError(
                f"{flag_of(given)} needs {_named(missing)}: a client certificate (mutual TLS) "
                "takes both (a PEM file holding both may be given to both)")
        if self.ssl_password is not None and self.ssl_keyfile is None:
            raise ConfigError("--ssl-password decrypts the client key: give --ssl-keyfile "
                              "and --ssl-certfile too, or drop it")
        if self.protocol in SASL_PROTOCOLS:
            missing = [n for n in ("sasl_username", "sasl_password") if not getattr(self, n)]
            if missing:
                raise ConfigError(
                    f"--security-protocol {self.protocol} needs "
                    f"{' and '.join(_named(n) for n in missing)} "
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

    def check_files(self) -> None:
        """Raise ConfigError naming the flag of an SSL file that is missing or unreadable."""
        for name in SSL_FILES:
            path = getattr(self, name)
            if path is None:
                continue
            if not path.is_file():
                raise ConfigError(f"{_named(name)}: {path} does not exist or is not a file")
            try:
                path.open("rb").close()
            except OSError as exc:
                raise ConfigError(f"{_named(name)}: cannot read {path}: {exc}") from exc

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
            raise ConfigError(f"{_named('ssl_cafile')}: cannot load {self.ssl_cafile} as PEM "
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


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    """The Kafka security flags, each with its `STREAMREC_*` environment fallback."""
    group = parser.add_argument_group(
        "Kafka security", "TLS and SASL settings for every Kafka client of this command.")

    def add(flag: str, help_text: str, secret: bool = False, **kwargs: Any) -> None:
        env = f"env {env_name(flag)}" + (": prefer it, flags show up in `ps`" if secret else "")
        group.add_argument(flag, default=env_default(flag, kwargs.pop("default", None), str),
                           help=f"{help_text} ({env})", **kwargs)

    add("--security-protocol", "how clients connect (default %(default)s)",
        default="PLAINTEXT", choices=get_args(SecurityProtocol))
    add("--ssl-cafile", "PEM CA bundle that signed the brokers' certificates "
        "(default: the system CAs)", metavar="PEM")
    add("--ssl-certfile", "client certificate, PEM (mutual TLS; with --ssl-keyfile)",
        metavar="PEM")
    add("--ssl-keyfile", "client private key, PEM (mutual TLS)", metavar="PEM")
    add("--ssl-password", "password of an encrypted --ssl-keyfile", secret=True,
        metavar="SECRET")
    group.add_argument(
        "--no-ssl-check-hostname", action="store_true",
        default=env_default("--no-ssl-check-hostname", False),
        help="accept a broker certificate that does not name the host connected to; the CA "
             "is still checked (env STREAMREC_NO_SSL_CHECK_HOSTNAME)")
    add("--sasl-mechanism", "SASL mechanism (default with SASL_*: PLAIN)",
        choices=get_args(SaslMechanism))
    add("--sasl-username", "SASL username", metavar="USER")
    add("--sasl-password", "SASL password", secret=True, metavar="SECRET")


def security_from_args(args: argparse.Namespace) -> KafkaSecurity:
    """The checked `KafkaSecurity` for flags added by `add_security_flags`.

    Raises ConfigError naming the flag (and env variable) to fix, including SSL
    files that do not exist.
    """
    if args.security_protocol not in get_args(SecurityProtocol):  # a bad env value
        raise ConfigError(f"{_named('security_protocol')} must be one of "
                          f"{', '.join(get_args(SecurityProtocol))}, "
                          f"got {args.security_protocol!r}")
    security = KafkaSecurity(
        protocol=args.security_protocol,
        ssl_cafile=_path(args.ssl_cafile), ssl_certfile=_path(args.ssl_certfile),
        ssl_keyfile=_path(args.ssl_keyfile), ssl_password=args.ssl_password or None,
        ssl_check_hostname=not args.no_ssl_check_hostname,
        sasl_mechanism=args.sasl_mechanism or None, sasl_username=args.sasl_username or None,
        sasl_password=args.sasl_password or None,
    )
    security.check_files()
    return security


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
