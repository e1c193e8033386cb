"""The e-mail channel against a real SMTP server (aiosmtpd on 127.0.0.1): firing and resolve
mails through the alerting service, ``alerts test`` with STARTTLS and AUTH, refusals, retries.
Time is an injected clock; the certificate is made here and trusted through SSL_CERT_FILE."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import logging
import random
import socket
import ssl
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from prometheus_client import CollectorRegistry

from driftline.alerting.channels import email as email_channel
from driftline.alerting.cli import main
from driftline.alerting.delivery import Deliverer, RetryPolicy
from driftline.alerting.metrics import AlertMetrics
from driftline.alerting.outbox import Outbox
from driftline.alerting.rules import ChannelConfig, Secret, load_rules
from driftline.alerting.service import AlertService
from tests.alerting.helpers import insert_window, unique_model, window_end

USER, PASSWORD = "driftline-bot", "s3cret-Pa55w0rd-xyz"
HEALTHY = {"age": 0.03, "income": 0.05, "country": 0.02}
DRIFTED = {"age": 0.45, "income": 0.31, "country": 0.08}


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class SMTPServer:
    """aiosmtpd on a free loopback port; records every accepted message and each AUTH."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None,
                 password: str = PASSWORD) -> None:
        self.messages: list[dict[str, Any]] = []
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        self.rcpt_replies: dict[str, deque[str]] = {}  # address -> replies to give, in order
        outer = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: ANN
                replies = outer.rcpt_replies.get(address)
                if replies:
                    return replies.popleft()
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):  # noqa: ANN
                outer.messages.append({
                    "mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                    "tls": session.ssl is not None, "authenticated": session.authenticated,
                    "msg": email.message_from_bytes(envelope.content, policy=email.policy.default),
                })
                return "250 Message accepted"

        def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN
            ok = auth_data.login == USER.encode() and auth_data.password == password.encode()
            outer.logins.append((auth_data.login.decode(), ok))
            return AuthResult(success=ok, handled=False)

        for _ in range(5):  # aiosmtpd's controller needs a concrete port: take a free one
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            self._ctl = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                   authenticator=authenticator, tls_context=tls_context,
                                   auth_require_tls=tls_context is not None)
            try:
                self._ctl.start()
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port for the SMTP server")

    def close(self) -> None:
        self._ctl.stop()


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    s = SMTPServer()
    yield s
    s.close()


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftline test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _rules(tmp: Path, port: int, model: str = "m", *, starttls: bool = False,
           secret: str = "password_file: pw.txt") -> Path:
    (tmp / "pw.txt").write_text(PASSWORD + "\n")
    path = tmp / "rules.yaml"
    path.write_text(f"""
version: 1
dashboard_url: http://dash.example:8501
channels:
  team-mail: {{type: email, smtp_host: 127.0.0.1, smtp_port: {port}, starttls: {str(starttls).lower()},
              sender: driftline@example.com, to: [oncall@example.com, ml-team@example.com],
              username: {USER}, {secret}, timeout_s: 5}}
rules:
  - name: feature-drift
    kind: drift
    model: {model}
    statistic: psi
    threshold: 0.2
    fire_after: 3
    resolve_after: 2
    min_samples: 500
    severity: critical
    channels: [team-mail]
    description: Input distribution moved away from the training data.
""")
    return path


def _assert_no_password(*texts: str) -> None:
    for t in texts:
        assert PASSWORD not in t


def test_firing_then_resolve_mails_through_the_service(tmp_path, alert_ch, smtp, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    model = unique_model("fraud")
    clock = Clock(window_end(0))
    svc = AlertService(load_rules(_rules(tmp_path, smtp.port, model), env={}), alert_ch,
                       tmp_path / "state", registry=CollectorRegistry(), clock=clock,
                       retry=RetryPolicy(base_s=0.01, cap_s=0.05))
    try:
        for i in range(4):
            insert_window(alert_ch, model, i, HEALTHY)
        for i in range(4, 8):  # fires on the third drifted window, once
            insert_window(alert_ch, model, i, DRIFTED)
            clock.t = window_end(i)
            svc.tick()
        assert len(smtp.messages) == 1
        first = smtp.messages[0]
        assert first["rcpt_tos"] == ["oncall@example.com", "ml-team@example.com"]
        assert first["mail_from"] == "driftline@example.com" and first["authenticated"]
        assert smtp.logins == [(USER, True)]
        msg = first["msg"]
        assert msg["To"] == "oncall@example.com, ml-team@example.com" and msg["Date"]
        subject = msg["Subject"]
        assert subject.startswith("[CRITICAL] feature-drift:") and "psi > 0.2" in subject
        assert f"{model} v1" in subject
        text = msg.get_content()
        assert "Incident opened: feature-drift (critical)" in text
        assert "Input distribution moved away" in text
        assert "Since: 2026-03-01 00:40 UTC (first breaching window)" in text  # window 4
        assert "segment: all traffic" in text
        feats = text[text.index("Top drifted features:"):]
        assert feats.index("age: psi=0.45") < feats.index("income: psi=0.31")
        assert "country" not in feats.split("Dashboard:")[0]
        assert f"Dashboard: http://dash.example:8501/?page=model&model={model}" in text

        for i in (8, 9):  # two healthy windows resolve it
            insert_window(alert_ch, model, i, HEALTHY)
            clock.t = window_end(i)
            svc.tick()
        assert len(smtp.messages) == 2
        resolved = smtp.messages[1]["msg"]
        assert resolved["Subject"].startswith("[RESOLVED] feature-drift:")
        assert "Resolved at: " in resolved.get_content()
        assert "Top drifted features" not in resolved.get_content()
        # Threaded under the opening mail, and the Message-IDs are stable per event.
        assert resolved["In-Reply-To"] == msg["Message-ID"] != resolved["Message-ID"]
        mails = [m for m in svc.outbox.messages() if m[1] == "team-mail"]
        assert [m[2] for m in mails] == ["sent", "sent"]
        _assert_no_password(*(str(m) for m in svc.outbox.messages()))
    finally:
        svc.close()
    out, err = capfd.readouterr()
    _assert_no_password(caplog.text, out, err)


def test_alerts_test_over_starttls_with_env_password(tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    ca, cert, key = _tls_files(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = SMTPServer(tls_context=ctx)  # AUTH only offered after STARTTLS
    try:
        path = _rules(tmp_path, server.port, starttls=True, secret="password_env: T_SMTP_PW")
        monkeypatch.setenv("T_SMTP_PW", PASSWORD)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # how an operator trusts a private CA
        args = ["alerts", "test", "--rules", str(path), "--channel", "team-mail",
                "--data-dir", str(tmp_path / "d")]
        assert main(args) == 0
        (got,) = server.messages
        assert got["tls"] and got["authenticated"] and server.logins == [(USER, True)]
        assert got["msg"]["Subject"] == "driftline test notification for team-mail"

        monkeypatch.setenv("T_SMTP_PW", "wrong-" + PASSWORD)  # 535: permanent, not retried
        assert main(args) == 1
        assert "failed SMTP 535" in capsys.readouterr().err
        assert server.logins[-1] == (USER, False) and len(server.messages) == 1
        logins = len(server.logins)  # smtplib tries PLAIN, then LOGIN

        monkeypatch.setenv("T_SMTP_PW", PASSWORD)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert.parent / "nope.pem"))  # CA not trusted
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        assert main(args) == 1
        assert "SSLCertVerificationError" in capsys.readouterr().err
        assert len(server.logins) == logins and len(server.messages) == 1  # no AUTH in clear
    finally:
        server.close()
    out, err = capsys.readouterr()
    _assert_no_password(caplog.text, out, err)


def test_starttls_required_but_not_offered_sends_nothing(tmp_path, smtp, capsys):
    path = _rules(tmp_path, smtp.port, starttls=True)
    assert main(["alerts", "test", "--rules", str(path), "--channel", "team-mail",
                 "--data-dir", str(tmp_path / "d")]) == 1
    assert "starttls" in capsys.readouterr().err.lower()  # named, whether retried or failed
    assert smtp.messages == [] and smtp.logins == []


def _deliverer(db: Path, channel: ChannelConfig, **policy: Any):
    clock, registry = Clock(), CollectorRegistry()
    outbox = Outbox(db)
    d = Deliverer(outbox, {channel.name: channel}, AlertMetrics(registry), clock=clock,
                  rng=random.Random(1),
                  policy=RetryPolicy(base_s=1.0, cap_s=8.0, max_attempts=4, **policy))
    return d, outbox, clock, registry


def _channel(port: int, to: tuple[str, ...]) -> ChannelConfig:
    return ChannelConfig(name="mail", type="email", smtp_host="127.0.0.1", smtp_port=port,
                   starttls=False, sender="driftline@example.com", to=to, username=USER,
                   password=Secret(PASSWORD), timeout_s=5, rate_per_s=0)


def _count(registry, outcome: str) -> float:
    return registry.get_sample_value("driftline_alert_notifications_total",
                                     {"channel": "mail", "outcome": outcome}) or 0.0


BODY = {"subject": "[CRITICAL] r: psi > 0.2 on m v1", "text": "body"}


def test_recipient_550_fails_and_450_is_retried(tmp_path, smtp):
    smtp.rcpt_replies["typo@example.com"] = deque(["550 5.1.1 No such user"])
    smtp.rcpt_replies["grey@example.com"] = deque(["450 4.2.0 Greylisted, try again"])
    d, outbox, clock, reg = _deliverer(tmp_path / "a.sqlite3", _channel(
        smtp.port, ("oncall@example.com", "typo@example.com")))
    outbox.enqueue("mail:k1", "mail", "email", BODY, clock())
    assert d.deliver_due() == 0
    # The good address got it; the typo must not pass as "sent".
    assert [m["rcpt_tos"] for m in smtp.messages] == [["oncall@example.com"]]
    (_, _, status, _, err), = outbox.messages()
    assert status == "failed" and err.startswith("SMTP 550") and _count(reg, "failed") == 1

    d, outbox, clock, reg = _deliverer(tmp_path / "b.sqlite3",
                                       _channel(smtp.port, ("grey@example.com",)))
    outbox.enqueue("mail:k2", "mail", "email", BODY, clock())
    assert d.deliver_due() == 0 and outbox.messages()[0][2] == "pending"
    assert _count(reg, "retry") == 1 and len(smtp.messages) == 1
    clock.t = outbox.next_due_at()
    assert d.deliver_due() == 1 and smtp.messages[-1]["rcpt_tos"] == ["grey@example.com"]
    assert smtp.messages[-1]["msg"]["Message-ID"] == "<mail.k2@driftline>"


def test_connection_refused_is_retried_then_marked_failed(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d, outbox, clock, reg = _deliverer(tmp_path / "o.sqlite3",
                                       _channel(port, ("oncall@example.com",)))
    outbox.enqueue("mail:k", "mail", "email", BODY, clock())
    for _ in range(6):
        d.deliver_due()
        if outbox.next_due_at() is None:
            break
        clock.t = outbox.next_due_at()
    (_, _, status, attempts, err), = outbox.messages()
    assert status == "failed" and attempts == 4 and "ConnectionRefusedError" in err
    assert _count(reg, "retry") == 3 and _count(reg, "failed") == 1
    _assert_no_password(caplog.text)


def test_header_values_from_events_cannot_break_the_message():
    ch = _channel(25, ("a@example.com",))
    msg = email_channel.build_message(ch, {"subject": "[WARNING] r on evil\r\nBcc: x@y", "text": "t"},
                                      "mail:k")
    assert msg["Subject"] == "[WARNING] r on evil Bcc: x@y" and msg["Bcc"] is None
