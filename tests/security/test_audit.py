"""Tamper-evident, exact-argument audit: every decision names the digest of exactly what was
decided, and the audit log is a hash chain that `signoff audit verify` checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor

from ..conftest import BASIC_CONFIG
from ..procs import cli
from ..stores import raw_sql, tamper

pytestmark = pytest.mark.anyio


def canonical_digest(action: str, details: object, metadata: dict[str, object]) -> str:
    """Written apart from server.intake: SHA-256 of the canonical JSON of the three."""
    doc = {"action": action, "details": details, "metadata": metadata}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "signoff.toml"
    path.write_text(BASIC_CONFIG, encoding="utf-8")
    return path


async def file_and_decide(config: Path, n: int = 3) -> list[str]:
    ids = []
    async with open_app(load_config(config), background=False) as app:
        mcp = build_mcp(app.service, transport="memory")
        async with Client(mcp, client_info=Implementation(name="claude-code", version="1")) as client:
            for i in range(n):
                args = {"action": "deploy", "summary": f"ship {i}", "details": {"tag": f"v{i}", "ü": "é"},
                        "metadata": {"env": "prod", "n": i}}  # fmt: skip
                out = (await client.call_tool("request_approval", args)).structured_content
                assert out is not None
                assert out["action_digest"] == canonical_digest("deploy", args["details"], args["metadata"])
                ids.append(out["request_id"])
                await app.service.decide(out["request_id"], i % 2 == 0, Actor("human", "alice", "console"), "ok")
        for rid in ids:
            req = await app.service.get(rid)
            decided = [e for e in await app.store.audit(request_id=rid) if e.event in ("approved", "rejected")]
            assert [e.action_digest for e in decided] == [req.action_digest]  # the decision is for that digest
    return ids


async def test_the_chain_verifies_and_names_the_first_changed_event(config: Path) -> None:
    await file_and_decide(config)
    ok = cli("audit", "verify", config=config)
    assert ok.returncode == 0 and "audit chain OK in the database: 6 events" in ok.stdout
    with raw_sql(load_config(config)) as raw:  # an attacker with the database: lift the guard, change who decided
        tamper(raw, "UPDATE audit SET actor = 'bob' WHERE seq = 4")
    broken = cli("audit", "verify", config=config)
    assert broken.returncode == 1
    assert "BROKEN in the database at event 4: its content does not match its hash" in broken.stdout


async def test_a_removed_event_breaks_the_chain_at_the_next_one(config: Path) -> None:
    await file_and_decide(config)
    with raw_sql(load_config(config)) as raw:
        tamper(raw, "DELETE FROM audit WHERE seq = 3")
    broken = cli("audit", "verify", config=config)
    assert broken.returncode == 1 and "at event 4: its prev_hash does not match" in broken.stdout


async def test_an_export_verifies_elsewhere_and_a_changed_copy_does_not(config: Path, tmp_path: Path) -> None:
    await file_and_decide(config)
    export = cli("audit", "--format", "jsonl", config=config).stdout
    copy = tmp_path / "audit.jsonl"
    copy.write_text(export, encoding="utf-8")
    ok = cli("audit", "verify", "--file", str(copy))
    assert ok.returncode == 0 and "6 events" in ok.stdout
    lines = export.splitlines()
    event = json.loads(lines[3])  # event 4: the second decision, with its reason
    event["data_json"] = event["data_json"].replace("ok", "OK")
    lines[3] = json.dumps(event)
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    broken = cli("audit", "verify", "--file", str(copy))
    assert broken.returncode == 1 and "at event 4" in broken.stdout


def test_the_recipe_in_security_md_verifies_an_export(config: Path, tmp_path: Path) -> None:
    """SECURITY.md shows how to check an export without signoff; run that exact code."""
    import anyio

    anyio.run(file_and_decide, config)
    text = (Path(__file__).resolve().parents[2] / "SECURITY.md").read_text(encoding="utf-8")
    code = text.split("<!-- audit-recipe -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "SECURITY.md", "exec"), namespace)
    export = cli("audit", "--format", "jsonl", config=config).stdout.splitlines()
    check = namespace["verify_export"]
    assert callable(check)
    assert check(export) is None
    tampered = [line.replace('"alice"', '"mallory"') for line in export]
    assert check(tampered) == 2  # the first decision: the first event whose actor changed
