"""Decision callbacks go exactly where the operator said (issue: trust, item 6).

Real parts only: the in-memory MCP client for filing, the real deliverer and an HTTP receiver
on 127.0.0.1 for delivery. Name resolution is the one boundary faked where a test needs a
name to answer with a chosen address; "localhost" is the real resolver's own answer.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import logging
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from mcp import Client
from mcp.types import Implementation
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from signoff.server import cli
from signoff.server.app import App, open_app
from signoff.server.config import Config, parse_config
from signoff.server.decision_callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, CallbackDeliverer
from signoff.server.errors import ConfigError, RequestError
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor
from signoff.server.service import NewRequest

from ..conftest import SIGNOFF, subprocess_env
from ..policies import readme_example

pytestmark = pytest.mark.anyio
AGENT = Actor("agent", "claude-code", "mcp")
SECRET = "s3cret-for-callbacks"
ROUTE = '[approvers.alice]\ntelegram_user_id = 111\n[[routes]]\nname = "default"\napprovers = ["alice"]\n'


@dataclass
class Receiver:
    port: int = 0
    seen: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)  # path, body, headers

    def url(self, path: str = "/hook/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: Request) -> Response:
        self.seen.append((request.url.path, await request.body(), dict(request.headers)))
        return Response(status_code=204)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = Starlette(routes=[Route("/{path:path}", r.handle, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    r.port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield r
        finally:
            server.should_exit = True
    sock.close()


def config(tmp_path: Path, callbacks: str) -> Config:
    return parse_config(f"[callbacks]\n{callbacks}\n{ROUTE}[store]\npath = 'cb.db'\n", source="t", base_dir=tmp_path)


@asynccontextmanager
async def mcp_client(app: App) -> AsyncIterator[Client]:
    mcp = build_mcp(app.service, transport="memory")
    async with Client(mcp, client_info=Implementation(name="claude-code", version="2.1")) as client:
        yield client


async def deliver(app: App, *, resolver: Callable[[str, int], Awaitable[list[str]]] | None = None,
                  transport: httpx.AsyncBaseTransport | None = None) -> tuple[int, list[str]]:  # fmt: skip
    """Run the real deliverer once over what is due: (delivered, each outbox row's last_error)."""
    deliverer = CallbackDeliverer(app.service, SECRET, resolver=resolver)
    async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
        deliverer.client = client
        assert await deliverer.lease.claim()
        with anyio.fail_after(15):
            delivered = await deliverer.deliver_due()
        await deliverer.lease.release()
    rows = await app.store.read("SELECT last_error FROM outbox WHERE kind = 'callback' ORDER BY id")
    return delivered, [row["last_error"] or "" for row in rows]


async def final(app: App, url: str) -> str:
    """File a request with ``url`` as its callback and withdraw it, so the callback is due."""
    rid = (await app.service.request_approval(NewRequest("payout", "Pay", callback_url=url), AGENT)).id
    await app.service.cancel(rid, AGENT)
    return rid


# --- filing: only URLs under a prefix the operator wrote ------------------------------------

REFUSED = {
    "another port": "https://hooks.example.com:8443/signoff/x",
    "another path": "https://hooks.example.com/admin",
    "a sibling of an exact path": "https://hooks.example.com/exact-evil",
    "below an exact path": "https://hooks.example.com/exact/more",
    "http instead of https": "http://hooks.example.com/signoff/x",
    "userinfo naming the allowed host": "https://hooks.example.com@evil.example/signoff/",
    "userinfo before the allowed host": "https://me:pw@hooks.example.com/signoff/",
    "a '..' escape": "https://hooks.example.com/signoff/../admin",
    "an encoded '..' escape": "https://hooks.example.com/signoff/%2e%2E/admin",
    "a '..;' escape": "https://hooks.example.com/signoff/..;/admin",
    "an encoded slash": "https://hooks.example.com/signoff/..%2fadmin",
    "a backslash": "https://hooks.example.com/signoff/..\\admin",
    "a trailing dot": "https://hooks.example.com./signoff/x",
    "a fragment": "https://hooks.example.com/signoff/x#y",
    "another host": "https://hooks.example.com.evil.example/signoff/",
    "a numeric host": "https://2130706433/signoff/",
    "a space": "https://hooks.example.com/signoff/ x",
    "an IPv4-mapped form of an allowed IP": "http://[::ffff:127.0.0.1]:9000/hook/",
}
ACCEPTED = ["https://hooks.example.com/signoff/x", "HTTPS://Hooks.Example.COM:443/signoff/", "https://hooks.example.com/exact",
            "https://hooks.example.com/signoff/a/b?c=d", "http://127.0.0.1:9000/hook/x"]  # fmt: skip
PREFIXES = 'allowed_urls = ["https://hooks.example.com/signoff/", "https://hooks.example.com/exact", "http://127.0.0.1:9000/hook/"]'


async def test_an_agent_cannot_aim_a_callback_elsewhere_on_an_allowed_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", SECRET)
    async with open_app(config(tmp_path, PREFIXES), background=False) as app, mcp_client(app) as client:
        let_through = []
        for why, url in REFUSED.items():
            result = await client.call_tool("request_approval", {"action": "pay", "summary": "x", "callback_url": url})
            text = result.content[0].text  # type: ignore[union-attr]
            if not result.is_error or "callback_url" not in text:
                let_through.append(why)
        assert let_through == []
        assert await app.store.read("SELECT id FROM requests") == []
        for url in ACCEPTED:
            result = await client.call_tool("request_approval", {"action": "pay", "summary": "x", "callback_url": url})
            assert not result.is_error, (url, result.content)


async def test_a_refusal_is_short_and_does_not_echo_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", SECRET)
    long_url = "https://evil.example/" + "a" * 1900
    async with open_app(config(tmp_path, PREFIXES), background=False) as app:
        with pytest.raises(RequestError) as info:
            await app.service.request_approval(NewRequest("payout", "x", callback_url=long_url), AGENT)
    message = str(info.value)
    assert message.startswith("callback_url: ") and len(message) < 300 and "aaaaaaaaaa" not in message


# --- delivery: a name that resolves inward is not called ------------------------------------


async def test_a_host_name_resolving_to_loopback_is_refused_unless_the_ip_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", SECRET)
    async with receiver() as hook:
        prefixes = f'allowed_urls = ["http://localhost:{hook.port}/hook/", "{hook.url()}"]'
        async with open_app(config(tmp_path, prefixes), background=False) as app:
            await final(app, f"http://localhost:{hook.port}/hook/by-name")
            delivered, errors = await deliver(app)  # the real resolver: localhost is loopback
            assert delivered == 0 and hook.seen == []
            assert "localhost resolves to" in errors[0] and "loopback" in errors[0]

            await final(app, hook.url("/hook/by-ip"))  # the operator wrote 127.0.0.1 itself
            delivered, _ = await deliver(app)
            assert delivered == 1 and [path for path, _, _ in hook.seen] == ["/hook/by-ip"]


INWARD = [["127.0.0.1"], ["10.1.2.3"], ["169.254.169.254"], ["fd00:ec2::254"], ["fe80::1"], ["::ffff:10.0.0.1"],
          ["::ffff:169.254.169.254"], ["100.64.0.9"], ["0.0.0.0"], ["224.0.0.1"], ["240.0.0.1"], ["2002:7f00:1::1"],
          ["64:ff9b::a00:1"], ["93.184.215.14", "192.168.1.1"]]  # fmt: skip


@pytest.mark.parametrize("answers", INWARD)
async def test_no_inward_address_is_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", SECRET)
    sent: list[httpx.Request] = []

    async def resolver(host: str, port: int) -> list[str]:
        return answers

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    async with open_app(config(tmp_path, PREFIXES), background=False) as app:
        await final(app, "https://hooks.example.com/signoff/x")
        delivered, errors = await deliver(app, resolver=resolver, transport=httpx.MockTransport(handler))
    assert delivered == 0 and sent == []
    assert "hooks.example.com resolves to" in errors[0] and "not sent" in errors[0]


async def test_delivery_connects_to_the_address_it_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name is resolved once per attempt and the connection goes to that answer."""
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", SECRET)
    answers = [["93.184.215.14"], ["127.0.0.1"]]  # public when checked, loopback if asked again
    sent: list[httpx.Request] = []

    async def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("hooks.example.com", 443)
        return answers.pop(0)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    async with open_app(config(tmp_path, PREFIXES), background=False) as app:
        await final(app, "https://hooks.example.com/signoff/x?y=1")
        delivered, _ = await deliver(app, resolver=resolver, transport=httpx.MockTransport(handler))
    assert delivered == 1 and len(answers) == 1
    [request] = sent
    assert (request.url.host, request.url.port, request.url.raw_path) == ("93.184.215.14", None, b"/signoff/x?y=1")
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


def _certificate(name: str, folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


async def test_a_pinned_https_connection_checks_the_certificate_against_the_name(tmp_path: Path) -> None:
    """What delivery does for https: connect to the checked IP, send the name as SNI and Host."""
    from signoff.server.callback_targets import parse_url, post_pinned

    cert_file, key_file = _certificate("hooks.example.com", tmp_path)
    hosts: list[str] = []

    async def handle(request: Request) -> Response:
        hosts.append(request.headers["host"])
        return Response(status_code=204)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    app = Starlette(routes=[Route("/signoff/x", handle, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ssl_certfile=str(cert_file),
                                          ssl_keyfile=str(key_file)))  # fmt: skip
    trust = ssl.create_default_context(cafile=str(cert_file))
    loopback = ipaddress.ip_address("127.0.0.1")
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            async with httpx.AsyncClient(verify=trust, trust_env=False) as client:
                with anyio.fail_after(15):
                    ok = await post_pinned(client, parse_url(f"https://hooks.example.com:{port}/signoff/x"), loopback,
                                           b"{}", {})  # fmt: skip
                    assert ok.status_code == 204 and hosts == [f"hooks.example.com:{port}"]
                    with pytest.raises(httpx.ConnectError, match="certificate"):
                        await post_pinned(client, parse_url(f"https://other.example.com:{port}/signoff/x"), loopback,
                                          b"{}", {})  # fmt: skip
        finally:
            server.should_exit = True
    sock.close()


# --- the signature covers the URL -------------------------------------------------------------


async def test_the_signature_covers_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(readme_example("verify"), namespace)  # docs/policies.md's receiver code, verbatim
    verify = namespace["verify"]
    async with receiver() as hook:
        cfg = config(tmp_path, f'allowed_urls = ["{hook.url()}"]')
        async with open_app(cfg, background=False) as app:
            await final(app, hook.url("/hook/a"))
            assert (await deliver(app))[0] == 1
    [(_, body, headers)] = hook.seen
    timestamp, sig = headers[TIMESTAMP_HEADER.lower()], headers[SIGNATURE_HEADER.lower()]
    assert verify(SECRET.encode(), hook.url("/hook/a"), body, timestamp, sig)
    assert not verify(SECRET.encode(), hook.url("/hook/b"), body, timestamp, sig)  # replayed to another endpoint
    assert not verify(b"wrong", hook.url("/hook/a"), body, timestamp, sig)
    old = "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert sig != old  # the URL-less MAC of before is not what is sent


# --- allowed_hosts: read for one more release ---------------------------------------------------


async def test_allowed_hosts_still_works_with_a_deprecation_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", SECRET)
    with caplog.at_level(logging.WARNING):
        cfg = config(tmp_path, 'allowed_hosts = ["hooks.example.com", "*.corp.example"]')
    [warning] = [r.getMessage() for r in caplog.records if "allowed_hosts" in r.getMessage()]
    assert "deprecated" in warning and 'allowed_urls = ["https://hooks.example.com/"' in warning
    async with open_app(cfg, background=False) as app:
        for url in ("https://hooks.example.com/any/path", "https://a.corp.example/x"):
            await app.service.request_approval(NewRequest("payout", "x", callback_url=url), AGENT)
        for url in ("http://hooks.example.com/x", "https://hooks.example.com:8443/x", "https://corp.example/x",
                    "https://x@hooks.example.com/"):  # fmt: skip
            with pytest.raises(RequestError, match="callback_url"):
                await app.service.request_approval(NewRequest("payout", "x", callback_url=url), AGENT)


def test_check_config_and_doctor_show_the_deprecation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "signoff.toml"
    path.write_text(f'[callbacks]\nallowed_hosts = ["hooks.example.com"]\n{ROUTE}[store]\npath = "d.db"\n')
    res = subprocess.run([SIGNOFF, "check-config", "--config", str(path)], capture_output=True, text=True,
                         env=subprocess_env(SIGNOFF_CALLBACK_SECRET=SECRET), timeout=60)  # fmt: skip
    assert res.returncode == 0 and 'allowed_urls = ["https://hooks.example.com/"]' in res.stderr
    cli.main(["doctor", "--config", str(path)])
    assert 'deprecated; write allowed_urls = ["https://hooks.example.com/"]' in capsys.readouterr().out


# --- the configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("callbacks", "expected"),
    [
        ('allowed_urls = ["hooks.example.com"]', "callbacks.allowed_urls[0]: 'hooks.example.com'"),
        ('allowed_urls = ["ftp://hooks.example.com/"]', "not an http:// or https:// URL"),
        ('allowed_urls = ["https://me@hooks.example.com/"]', "user name"),
        ('allowed_urls = ["https://hooks.example.com/a/?x=1"]', "no query"),
        ('allowed_urls = ["https://hooks.example.com/a/#x"]', "fragment"),
        ('allowed_urls = ["https://hooks.example.com/a/../b/"]', "'..' segment"),
        ('allowed_urls = ["https://*.example.com/"]', "not a host name"),
        ('allowed_urls = ["https://hooks.example.com/"]\nallowed_hosts = ["a.example.com"]', "remove allowed_hosts"),
        ('allowed_hosts = ["https://hooks.example.com"]', "callbacks.allowed_hosts[0]"),
    ],
)
def test_prefixes_are_checked_at_load(tmp_path: Path, callbacks: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, callbacks)
    assert expected in str(info.value)


def test_a_route_callback_url_is_checked_at_load(tmp_path: Path) -> None:
    text = ('[callbacks]\nallowed_urls = ["https://hooks.example.com/signoff/"]\n' + ROUTE +
            'callback_url = "https://hooks.example.com:8443/signoff/x"\n')  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="t", base_dir=tmp_path)
    assert "routes[0].callback_url" in str(info.value) and "allowed_urls" in str(info.value)
