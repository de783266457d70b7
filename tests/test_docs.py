"""The documentation stays true: links resolve, the quick start stays short, every command it
shows exists, and the README's picture is what the real Telegram renderer draws today."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
from functools import cache
from pathlib import Path

import pytest

from signoff.server.cli import main

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages being written alongside this one: a link to them is checked once they exist.
NOT_YET = {ROOT / "docs" / "operations.md"}
# Commands being added alongside the docs that describe them (issue 10).
COMING = {"status", "schema"}
QUICK_START_MAX = 60


def _without_code(text: str) -> str:
    """The page with fenced code blocks blanked (their `#` lines are not headings)."""
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)


@cache
def anchors(page: Path) -> frozenset[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1 -2 on repeats."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _without_code(page.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    out |= set(re.findall(r'<a (?:name|id)="([^"]+)"', page.read_text(encoding="utf-8")))
    return frozenset(out)


def links(page: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", _without_code(page.read_text(encoding="utf-8")))  # not inside code
    return re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'<img [^>]*src="([^"]+)"', text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto: …
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if file in NOT_YET and not file.exists():
            continue
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(file, ROOT)}")
    assert not broken, f"{os.path.relpath(page, ROOT)}: " + "; ".join(broken)


def test_the_readme_links_every_docs_page() -> None:
    readme = links(ROOT / "README.md")
    missing = [p.name for p in [*PAGES[1:], *NOT_YET] if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md does not link {missing}"


def test_the_quick_start_is_at_most_60_lines() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.S | re.M)
    assert found is not None, "README.md has no '## Quick start' section"
    lines = found.group(1).strip("\n").splitlines()
    assert len(lines) <= QUICK_START_MAX, f"the quick start is {len(lines)} lines; keep it to {QUICK_START_MAX}"


def _help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return out.getvalue()


@cache
def commands() -> frozenset[str]:
    listed = _help().split("positional arguments:")[1].split("options:")[0]
    return frozenset(re.findall(r"^    ([a-z][a-z-]*)", listed, re.M))


@cache
def flags(command: str) -> frozenset[str]:
    return frozenset(re.findall(r"(--[a-z][a-z-]*)", _help(command)))


def mentions(page: Path) -> list[tuple[str, list[str]]]:
    """Each `signoff COMMAND --flag …` written in code (a block or a span), with its flags."""
    text = page.read_text(encoding="utf-8")
    code = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    code += re.findall(r"`([^`\n]+)`", _without_code(text))
    found = []
    for chunk in code:
        for line in chunk.splitlines():
            # `signoff` where a command starts: a line, a prompt, a quote, a path (a `/` after a name,
            # not Slack's `/signoff …` slash command), after `--` or `uvx`.
            for m in re.finditer(r"""(?:^|[`"'(]|(?<=[^`\s])/|\$ |-- |uvx )signoff +([a-z][a-z-]*)([^#|;&]*)""",
                                 line.strip()):  # fmt: skip
                found.append((m.group(1), re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", m.group(2))))
    return found


def test_every_signoff_command_shown_is_real() -> None:
    assert {"mcp", "serve", "init", "doctor", "hook"} <= commands()
    wrong = []
    for page in PAGES:
        for command, used in mentions(page):
            where = page.relative_to(ROOT)
            if command in COMING:
                continue
            if command not in commands():
                wrong.append(f"{where}: signoff {command} is not a command")
            wrong += [f"{where}: signoff {command} has no {flag}" for flag in used if flag not in flags(command)]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_pages_mention_the_commands_they_should() -> None:
    shown = {command for page in PAGES for command, _ in mentions(page)}
    assert {"init", "doctor", "mcp", "serve", "hook", "pending", "approve", "reject", "status"} <= shown


def test_the_readme_picture_is_what_the_renderer_draws() -> None:
    script = ROOT / "docs" / "img" / "make_prompt.py"
    spec = importlib.util.spec_from_file_location("make_prompt", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    html, buttons = module.render()
    assert html.startswith("🔐 <b>Approval needed: Bash</b>") and "$ git push origin main" in html
    assert buttons == [["✅ Approve", "❌ Reject"], ["📝 Approve with note", "✍️ Reject with reason"], ["✏️ Edit"]]
    drawn = module.svg(html, buttons)
    assert (ROOT / "docs" / "img" / "prompt.svg").read_text(encoding="utf-8") == drawn, (
        "docs/img/prompt.svg is out of date: run .venv/bin/python docs/img/make_prompt.py"
    )
