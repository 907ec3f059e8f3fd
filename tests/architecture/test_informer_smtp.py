"""The Informer e-mails a person through Apprise: a real SMTP server (aiosmtpd) on 127.0.0.1.

The Apprise URL is plain SMTP (``mailto://``, ``mode=insecure``: no TLS, no STARTTLS) with a
login: the server requires AUTH (PLAIN/LOGIN over the plain connection, which aiosmtpd allows
with ``auth_require_tls=False``), so a mail that arrives proves the credentials were used.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any

import pytest

pytest.importorskip("apprise")
pytest.importorskip("aiosmtpd")

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402
from conftest import make_bars, wait_for  # noqa: E402
from operator_brains import Buyer  # noqa: E402

from osmarkets.architecture import Architecture  # noqa: E402
from osmarkets.brokers.simulated import SimulatedBroker  # noqa: E402
from osmarkets.notify import Notifier  # noqa: E402

pytestmark = [
    pytest.mark.timeout(90),
    # AUTH over plain SMTP is what these tests mean to exercise, on 127.0.0.1 only
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

USER = "osmuser"
PASSWORD = "Sm7pPassw0rdXyz"  # long enough for the Informer to scrub it (>= 6 characters)
SENDER = "osmarkets@example.com"
RECIPIENT = "operator@example.com"
BSID = ("EUR_USD", 1, "Minutes")


def mailto(port: int, user: str = USER, password: str = PASSWORD) -> str:
    """Plain SMTP to 127.0.0.1:port with a login, a from and a to address. ``smtp=`` names the
    server outright (Apprise's provider templates, keyed on the from domain, are skipped);
    ``mode=insecure`` is neither SSL nor STARTTLS."""
    return (
        f"mailto://{user}:{password}@127.0.0.1:{port}"
        f"?smtp=127.0.0.1&mode=insecure&from={SENDER}&to={RECIPIENT}"
    )


@dataclass
class Mail:
    subject: str
    body: str  # the text of every text/* part, joined
    plain: str  # the text/plain part (what a plain-text mail reader shows)
    raw: str
    mail_from: str
    rcpt_tos: list[str]


@dataclass
class MailBox:
    """What the SMTP server received (filled by its thread, read by the test)."""

    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (login, accepted)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Mail]:
        with self.lock:
            return list(self.mails)

    def bodies(self) -> str:
        return "\n".join(m.body for m in self.received())


class _Handler:
    def __init__(self, box: MailBox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        message = message_from_bytes(raw, policy=policy.default)
        texts = [
            part.get_content()
            for part in message.walk()
            if part.get_content_maintype() == "text" and not part.is_multipart()
        ]
        plain = message.get_body(("plain",))
        mail = Mail(
            subject=str(message["subject"] or ""),
            body="\n".join(texts),
            plain=plain.get_content() if plain is not None else "",
            raw=raw.decode("utf-8", "replace"),
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
        )
        with self.box.lock:
            self.box.mails.append(mail)
        return "250 OK"


#: listening sockets of the SMTP servers running in this process: closed in every child
#: forked from it (the agents), so that a server stopped here stops listening for them too
_LISTENING: set[socket.socket] = set()


def _close_listening_in_child() -> None:
    for sock in list(_LISTENING):
        sock.close()


os.register_at_fork(after_in_child=_close_listening_in_child)


class _Controller(Controller):
    """aiosmtpd's Controller on a socket of ours (bound to a free port of 127.0.0.1 before
    it starts, so no port is guessed; never left listening in a forked agent)."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self.sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self.sock)

    def stop(self, no_assert: bool = False) -> None:
        super().stop(no_assert)
        _LISTENING.discard(self.sock)
        self.sock.close()


@pytest.fixture
def smtp_server() -> Iterator[tuple[MailBox, _Controller]]:
    """An SMTP server on 127.0.0.1 (a free port) that requires AUTH (USER / PASSWORD) and
    keeps every mail; stopped at teardown (if the test has not stopped it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _LISTENING.add(sock)
    box = MailBox(port=sock.getsockname()[1])

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        login = data.login.decode("utf-8", "replace") if isinstance(data, LoginPassword) else ""
        with box.lock:
            box.logins.append((login, ok))
        return AuthResult(success=ok)

    controller = _Controller(
        _Handler(box),
        sock,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    try:
        controller.start()
        yield box, controller
    finally:
        if getattr(controller, "_thread", None) is not None:
            controller.stop()  # unless the test stopped it
        _LISTENING.discard(sock)
        sock.close()


def _system(architectures: Callable[..., Any], url: str, **rules: Any) -> Any:
    system = architectures(
        Architecture,
        broker_factory=functools.partial(SimulatedBroker, 100_000),
        informer={"urls": [url], "rules": {"batch_seconds": 0.2, **rules}},
    )
    system.add_brain("a", Buyer)
    system["a"].subscribe(BSID, 10)
    system.stream(data={"EUR_USD": make_bars(3000)}, speed=60)
    return system


def _fill_line(text: str) -> bool:
    return "[fill] a: buy 100 EUR_USD at 1.1" in text


def test_fill_and_control_arrive_by_smtp(
    architectures: Callable[..., Any], smtp_server: tuple[MailBox, _Controller]
) -> None:
    box, _ = smtp_server
    system = _system(architectures, mailto(box.port))

    # pause as soon as the Trader has a fill: few messages queue up before the control's
    wait_for(lambda: system["trader"].record()["fills"], timeout=30, what="a first fill")
    system.pause("a")
    wait_for(lambda: _fill_line(box.bodies()), timeout=30, what="a fill e-mailed")
    wait_for(lambda: "paused Brain a" in box.bodies(), timeout=30, what="the pause e-mailed")

    bodies = box.bodies()
    assert _fill_line(bodies)
    assert "[control] paused Brain a" in bodies
    mails = box.received()
    assert all(m.mail_from == SENDER and m.rcpt_tos == [RECIPIENT] for m in mails)
    assert all(m.subject.startswith("osMarkets: ") for m in mails)
    assert any("fill" in m.subject for m in mails)
    assert any("control" in m.subject for m in mails)
    # the server required AUTH: the mails came with the URL's login, which never shows
    assert (USER, True) in box.logins
    assert all(ok for _, ok in box.logins)
    assert not any(PASSWORD in m.raw for m in mails)

    status = wait_for(
        lambda: (s := system["informer"].status())["sent"] >= 2 and s,
        timeout=10,
        what="the Informer counting its sends",
    )
    assert status["sent"] >= 2
    assert status["failures"] == 0
    assert status["last_error"] == ""


def test_smtp_down_trading_goes_on(
    architectures: Callable[..., Any], smtp_server: tuple[MailBox, _Controller]
) -> None:
    box, controller = smtp_server
    system = _system(architectures, mailto(box.port), retries=0)
    informer = system["informer"]

    wait_for(lambda: _fill_line(box.bodies()), timeout=30, what="a fill e-mailed")
    controller.stop()  # the mail server goes away (nothing listens on its port any more)

    status = wait_for(
        lambda: (s := informer.status())["failures"] > 0 and s,
        timeout=15,
        what="a failed send counted",
    )
    assert status["last_error"]
    assert PASSWORD not in status["last_error"]

    # trading goes on while the mails fail: bars reach the Brain, orders fill
    bars = system["a"].osm_stats()["bars"]
    fills = len(system["trader"].record()["fills"])
    failures = status["failures"]
    wait_for(lambda: system["a"].osm_stats()["bars"] >= bars + 3, timeout=20, what="more bars")
    wait_for(
        lambda: len(system["trader"].record()["fills"]) >= fills + 3,
        timeout=20,
        what="more fills",
    )
    status = wait_for(
        lambda: (s := informer.status())["failures"] > failures and s,
        timeout=15,
        what="later sends failing too",
    )
    assert status["last_error"]
    assert PASSWORD not in status["last_error"]
    # a failed batch is kept and tried again later: nothing dropped while the queue has room
    assert status["dropped"] == 0 and status["queued"] > 0
    assert not any(PASSWORD in m.raw for m in box.received())


# -- what the Notifier (the Informer's sender, in this process here) makes of the mails --------
def test_mail_text_has_one_line_per_notification(
    smtp_server: tuple[MailBox, _Controller],
) -> None:
    box, _ = smtp_server
    notifier = Notifier([mailto(box.port)], {"batch_seconds": 1.0, "retries": 0})
    try:
        notifier.on_control("paused Brain a: <by the operator>")
        notifier.on_control("resumed Brain a")
        mail = wait_for(lambda: box.received() and box.received()[0], what="the mail")
    finally:
        notifier.close()
    assert mail.plain.splitlines() == [
        "[control] paused Brain a: <by the operator>",
        "[control] resumed Brain a",
    ]


def test_messages_queued_during_a_send_share_the_next_mail(
    smtp_server: tuple[MailBox, _Controller],
) -> None:
    box, _ = smtp_server
    notifier = Notifier([mailto(box.port)], {"batch_seconds": 0.2, "retries": 0})
    try:
        notifier.on_control("first")
        wait_for(lambda: notifier.status()["sent"] == 1, what="the first mail")
        notifier.on_control("second")  # Apprise holds this send back (its own rate limit)
        wait_for(lambda: notifier.status()["sending"] == 1, what="the second send under way")
        for number in range(5):
            notifier.on_control(f"queued {number}")
        wait_for(lambda: len(box.received()) >= 3, timeout=30, what="a third mail")
    finally:
        notifier.close()
    third = box.received()[2].body
    assert all(f"[control] queued {number}" in third for number in range(5)), third
