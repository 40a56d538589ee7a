"""A real SMTP server on loopback for the report tests (aiosmtpd, in a thread of its own): a
mailbox keeping what it accepts, STARTTLS with a self-signed certificate, a login it checks."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "analytics", "correct horse battery staple"


class Mailbox:
    """An aiosmtpd handler keeping what it accepts; ``answers`` are its first replies to DATA."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.received: list[tuple[str, list[str], bytes, bool]] = []  # sender, recipients, content, over TLS
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.answers:
            return self.answers.pop(0)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.ssl is not None))
        return "250 OK"

    def authenticator(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        # handled=False: aiosmtpd answers the client itself (235, or 535 for a refusal)
        return AuthResult(success=(auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode()),
                          handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def self_signed_certificate(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost, signed by itself: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


class MailServers:
    """``start(mailbox, tls=False)`` -> the port of a running aiosmtpd (STARTTLS offered with
    ``tls``, with ``certificate``; a login needs TLS); ``stop()`` ends every one started."""

    def __init__(self, certificate: tuple[str, str]) -> None:
        self.certificate = certificate
        self._controllers: list[Controller] = []

    def start(self, mailbox: Mailbox, tls: bool = False) -> int:
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.certificate)
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context,
                                authenticator=mailbox.authenticator, auth_require_tls=True)
        controller.start()
        self._controllers.append(controller)
        return port

    def stop(self) -> None:
        for controller in self._controllers:
            controller.stop()
