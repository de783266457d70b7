"""Draw docs/img/prompt.svg: a signoff Telegram prompt on a phone, from the real renderer.

The request is what ``signoff hook`` files for a Claude Code ``Bash`` call, under the config
``signoff init --telegram-user-id …`` writes: the hook's JSON goes through the hook's own
parser and ``tool_request``, the service files it in a throwaway database, and
``adapters/telegram/render.py`` renders the message and its buttons exactly as the bot sends
them. Only the request id (random) and the clock are fixed, so the picture does not change
from run to run. tests/test_docs.py regenerates it and compares, so it cannot drift.

    python docs/img/make_prompt.py            # rewrite docs/img/prompt.svg
    python docs/img/make_prompt.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import sys
import tempfile
import unicodedata
from html import escape
from html.parser import HTMLParser
from pathlib import Path

OUT = Path(__file__).with_name("prompt.svg")
AT = 1767261600.0  # 2026-01-01 10:00 UTC
REQUEST_ID = "req_7f3a9c2e41b0"
HOOK_INPUT = {
    "session_id": "3f1c2d4e-0000-4000-8000-000000000001",
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "git push origin main", "description": "Push the fix to GitHub"},
    "tool_use_id": "toolu_01A2B3C4D5E6F7G8H9J0K1L2",
    "cwd": "~/src/shop",  # expanded below: the prompt shows it as ~/src/shop on any machine
}


async def _render(hook_input: dict[str, object]) -> tuple[str, list[list[str]]]:
    """The prompt's HTML and its buttons' labels, row by row, as the bot would send them."""
    from signoff.adapters.telegram.buttons import ButtonSigner, new_key
    from signoff.adapters.telegram.render import keyboard, prompt_text
    from signoff.server.app import open_app
    from signoff.server.claude_code import tool_request
    from signoff.server.config import parse_config
    from signoff.server.hook import DEFAULT_IDENTITY, parse_event
    from signoff.server.models import Actor
    from signoff.server.starter import starter_config

    event = parse_event(hook_input)
    assert not isinstance(event, str)
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.environ.get("SIGNOFF_STATE_DIR")
        os.environ["SIGNOFF_STATE_DIR"] = tmp  # the starter config's database, in the throwaway folder
        try:
            config = parse_config(starter_config("me", 123456789), source="signoff init", base_dir=Path(tmp))
            async with open_app(config, background=False, clock=lambda: AT) as app:
                new = tool_request(event.tool_name, event.tool_input, event.tool_use_id, event.cwd)
                req = await app.service.request_approval(
                    new, Actor("agent", DEFAULT_IDENTITY, "hook"), session=event.session
                )
        finally:
            if saved is None:
                os.environ.pop("SIGNOFF_STATE_DIR", None)
            else:
                os.environ["SIGNOFF_STATE_DIR"] = saved
    req = dataclasses.replace(req, id=REQUEST_ID)
    rows = keyboard(req, ButtonSigner(new_key())).inline_keyboard
    return prompt_text(req, AT), [[button.text for button in row] for row in rows]


def render() -> tuple[str, list[list[str]]]:
    return asyncio.run(_render(dict(HOOK_INPUT, cwd=os.path.expanduser(str(HOOK_INPUT["cwd"])))))


# --- Telegram HTML → styled runs -------------------------------------------------------------


class _Runs(HTMLParser):
    """The text of Telegram HTML as (text, style) runs; style is "", "b", "code" or "pre"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.runs: list[tuple[str, str]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        style = next((s for s in ("pre", "code", "b") if s in self.open), "")
        self.runs.append((data, style))


# --- Layout: widths are estimated (Helvetica/Arial metrics), so lines wrap with room to spare ---

# Helvetica's advance widths, in thousandths of an em, for ASCII 32-126 (Arial and Liberation
# Sans share them).
_HELVETICA = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
]  # fmt: skip
FONT = "Helvetica, Arial, 'Liberation Sans', sans-serif"
MONO = "Menlo, Consolas, 'DejaVu Sans Mono', 'Liberation Mono', monospace"
SIZE, LINE = 15, 20  # px
WIDTH = 390  # a phone
BUBBLE_X, BUBBLE_W, PAD = 12, 330, 12
TEXT_W = BUBBLE_W - 2 * PAD - 4
SLACK = 0.92  # wrap before the estimate fills the line: other sans fonts run a little wider


def _char_width(ch: str, style: str) -> float:
    if style in ("code", "pre"):
        return 0.0 if unicodedata.combining(ch) or ch == "\ufe0f" else 0.602
    if ch == "\ufe0f" or unicodedata.combining(ch):
        return 0.0
    if 32 <= ord(ch) <= 126:
        em = _HELVETICA[ord(ch) - 32] / 1000
    elif unicodedata.east_asian_width(ch) == "W" or ord(ch) > 0xFFFF:
        em = 1.25  # emoji
    else:
        em = 0.6
    return em * (1.07 if style == "b" else 1.0)


def width(text: str, style: str = "") -> float:
    return sum(_char_width(ch, style) for ch in text) * SIZE


Line = list[tuple[str, str]]


def _wrap(runs: Line, room: float) -> list[Line]:
    """Greedy word wrap of one line of runs; a word longer than a line is cut."""
    lines: list[Line] = [[]]
    used = 0.0
    for text, style in runs:
        for token in re.findall(r"\S+|\s+", text):
            w = width(token, style)
            if used + w <= room:
                lines[-1].append((token, style))
                used += w
            elif token.isspace():
                lines.append([])
                used = 0.0
            else:
                if lines[-1]:
                    lines.append([])
                    used = 0.0
                while width(token, style) > room:
                    cut = max(1, next(i for i in range(len(token), 0, -1) if width(token[:i], style) <= room))
                    lines[-1].append((token[:cut], style))
                    lines.append([])
                    token = token[cut:]
                lines[-1].append((token, style))
                used = width(token, style)
    return lines


def _blocks(html: str) -> list[tuple[str, list[Line]]]:
    """("text" | "pre", wrapped lines) in order."""
    parser = _Runs()
    parser.feed(html)
    parser.close()
    blocks: list[tuple[str, list[Line]]] = []
    current: Line = []
    for text, style in [*parser.runs, ("", "end")]:
        if style == "pre":
            if current:
                blocks.append(("text", _split(current, TEXT_W * SLACK)))
                current = []
            blocks.append(("pre", _split([(text.strip("\n"), "pre")], (TEXT_W - 16) * SLACK)))
        elif style == "end":
            if current:
                blocks.append(("text", _split(current, TEXT_W * SLACK)))
        else:
            current.append((text, style))
    for i, (kind, lines) in enumerate(blocks):  # the blank lines around a <pre> are its margins
        if kind == "text":
            while lines and not "".join(t for t, _ in lines[-1]).strip() and i + 1 < len(blocks):
                lines.pop()
            while lines and not "".join(t for t, _ in lines[0]).strip() and i > 0:
                lines.pop(0)
    return blocks


def _split(runs: Line, room: float) -> list[Line]:
    """Break runs at newlines, then wrap each line."""
    lines: list[Line] = [[]]
    for text, style in runs:
        parts = text.split("\n")
        for j, part in enumerate(parts):
            if j:
                lines.append([])
            if part:
                lines[-1].append((part, style))
    return [wrapped for line in lines for wrapped in _wrap(line, room)]


def _tspans(line: Line) -> str:
    merged: Line = []
    for text, style in line:  # one tspan per style change, no trailing blanks
        if merged and merged[-1][1] == style:
            merged[-1] = (merged[-1][0] + text, style)
        else:
            merged.append((text, style))
    while merged and not merged[-1][0].rstrip():
        merged.pop()
    if merged:
        merged[-1] = (merged[-1][0].rstrip(), merged[-1][1])
    out = []
    for text, style in merged:
        attrs = ""
        if style == "b":
            attrs = ' font-weight="700"'
        elif style in ("code", "pre"):
            attrs = f' font-family="{MONO}" font-size="{SIZE - 1}"'
        out.append(f"<tspan{attrs}>{escape(text, quote=False)}</tspan>")
    return "".join(out)


def svg(html: str, buttons: list[list[str]]) -> str:
    """The phone: a chat with the bot, the prompt in a bubble and its inline keyboard under it."""
    body: list[str] = []
    y = 0.0
    for kind, lines in _blocks(html):
        if kind == "pre":
            y += 6
            height = len(lines) * LINE + 12
            body.append(f'<rect x="0" y="{y:g}" width="{TEXT_W}" height="{height:g}" rx="6" fill="#eef3f8"/>')
            body.append(f'<rect x="0" y="{y:g}" width="3" height="{height:g}" rx="1.5" fill="#3a8ad6"/>')
            for n, line in enumerate(lines):
                body.append(f'<text x="12" y="{y + 6 + (n + 1) * LINE - 5:g}">{_tspans(line)}</text>')
            y += height + 6
        else:
            for line in lines:
                y += LINE
                if line:
                    body.append(f'<text x="0" y="{y - 5:g}">{_tspans(line)}</text>')
    top = 64 + 16  # status bar and chat header, then a gap
    bubble_h = y + 2 * PAD + 14  # room for the time
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{{height}}" '
        f'viewBox="0 0 {WIDTH} {{height}}" role="img" '
        f'aria-label="A signoff approval prompt in Telegram, with Approve and Reject buttons">',
        f"<title>signoff asks in Telegram: {escape(html.split(chr(10))[0].replace('<b>', '').replace('</b>', ''))}</title>",
        '<defs><clipPath id="phone"><rect width="100%" height="100%" rx="28"/></clipPath></defs>',
        '<g clip-path="url(#phone)">',
        '<rect width="100%" height="100%" fill="#cfdcc0"/>',
        '<rect width="100%" height="64" fill="#f6f6f6"/><rect y="64" width="100%" height="0.5" fill="#b8b8b8"/>',
        '<path d="M22 24 l-9 9 l9 9" fill="none" stroke="#3a8ad6" stroke-width="2.5" stroke-linecap="round"/>',
        '<circle cx="52" cy="33" r="17" fill="#3a8ad6"/>',
        f'<text x="52" y="39" text-anchor="middle" fill="#fff" font-family="{FONT}" font-size="17" '
        'font-weight="700">S</text>',
        f'<text x="78" y="30" font-family="{FONT}" font-size="16" font-weight="700" fill="#111">signoff</text>',
        f'<text x="78" y="48" font-family="{FONT}" font-size="13" fill="#8a8a8a">bot</text>',
        f'<rect x="{BUBBLE_X}" y="{top}" width="{BUBBLE_W}" height="{bubble_h:g}" rx="16" fill="#fff"/>',
        f'<g transform="translate({BUBBLE_X + PAD} {top + PAD})" font-family="{FONT}" font-size="{SIZE}" '
        'fill="#111" xml:space="preserve">',
        *body,
        "</g>",
        f'<text x="{BUBBLE_X + BUBBLE_W - PAD}" y="{top + bubble_h - 8:g}" text-anchor="end" font-family="{FONT}" '
        'font-size="12" fill="#9a9a9a">10:00</text>',
    ]
    y = top + bubble_h + 4
    for row in buttons:
        w = (BUBBLE_W - 4 * (len(row) - 1)) / len(row)
        for i, label in enumerate(row):
            x = BUBBLE_X + i * (w + 4)
            parts.append(f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="40" rx="10" fill="#000" '
                         'fill-opacity="0.28"/>')  # fmt: skip
            parts.append(f'<text x="{x + w / 2:g}" y="{y + 25:g}" text-anchor="middle" font-family="{FONT}" '
                         f'font-size="14" font-weight="700" fill="#fff">{escape(label, quote=False)}</text>')  # fmt: skip
        y += 44
    height = round(y + 24)
    parts += ["</g>", '<rect x="1" y="1" width="388" height="{inner}" rx="27" fill="none" stroke="#222" '
              'stroke-width="2"/>', "</svg>"]  # fmt: skip
    return "\n".join(parts).replace("{height}", str(height)).replace("{inner}", str(height - 2)) + "\n"


def build() -> str:
    return svg(*render())


def main(argv: list[str]) -> int:
    text = build()
    if "--check" in argv:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python {Path(__file__).as_posix()}", file=sys.stderr)
            return 1
        return 0
    if "--print" in argv:
        html, buttons = render()
        print(html)
        print(json.dumps(buttons, ensure_ascii=False))
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
