"""Syntax colouring on the request page (issue 14): the tokenizer gives back exactly the text it
was given, whatever it is, and the page shows coloured pieces as text, never as markup."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signoff.adapters.web.colour import LIMIT, colour, language, split_lines
from signoff.adapters.web.details import diff_lines
from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.intake import NewRequest
from signoff.server.models import Actor

from .web_support import TOKEN_IN, Served, serve_web, unscope

LANGS = ("json", "shell", "python", "js", None, "cobol")
CLASSES = {"", "tok-key", "tok-str", "tok-num", "tok-lit", "tok-punct", "tok-com", "tok-var", "tok-op", "tok-opt",
           "tok-esc", "tok-cmd", "tok-kw", "tok-deco", "tok-prompt"}  # fmt: skip
HOSTILE = [
    "",
    "\n",
    '"',
    "'",
    "`",
    "$",
    "${",
    "\\",
    '"unterminated \\',
    "'''never closed",
    '"""\n\n',
    "/* open",
    "#",
    "\x00\x1b[31m\u202e\u2028\r\n\t",
    "<script>alert('x')</script><img src=x onerror=\"alert(1)\">",
    "</pre></span><script>alert(1)</script>",
    'echo "$(rm -rf / 2>&1 >>/dev/null)" && ${X:-`id`} || true; # <b>',
    '{"a": [1, -2.5e-3, true, null, "x\\"y", {"<k>": NaN}]}',
    "def f(x=0x1F, *a):\n    return rb'\\x00' + f\"{x!r}\"  # <!--",
    "const s = `a${b}` /* */ // </script>\nlet n = 3n;",
    "-" * 500 + "=" * 500,
    "\\" * 101,
    '"' * 99,
    "9" * 1000 + ">",
]
SIGNIFICANT = [*"\"'`$\\{}[]():;,|&<>#-=!@*/\n\t .0123456789abcefnrtuxlEL_", "\x00", "\u202e", "\r", "é"]
texts = st.text(alphabet=st.sampled_from(SIGNIFICANT), max_size=200) | st.text(max_size=200)


def check(text: str, lang: str | None) -> None:
    pieces = colour(text, lang)
    assert "".join(part for _, part in pieces) == text
    assert all(part for _, part in pieces), "no empty piece"
    assert all(a[0] != b[0] for a, b in itertools.pairwise(pieces)), "neighbours merged"
    assert {cls for cls, _ in pieces} <= CLASSES
    lines = split_lines(pieces)
    assert ["".join(part for _, part in line) for line in lines] == text.split("\n")


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_round_trips(text: str, lang: str | None) -> None:
    check(text, lang)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, lang=st.sampled_from(LANGS))
def test_random_text_round_trips(text: str, lang: str | None) -> None:
    check(text, lang)


@settings(max_examples=50, deadline=None)
@given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=4),
                          max_leaves=20))  # fmt: skip
def test_json_round_trips_and_keys_are_keys(value: Any) -> None:
    text = json.dumps(value, indent=2)
    check(text, "json")
    if isinstance(value, dict) and value:
        assert ("tok-key", json.dumps(next(iter(value)))) in colour(text, "json")


def test_what_is_coloured() -> None:
    shell = colour('FOO=1 git commit -m "msg $X" --amend && echo ${HOME} | grep -v x >> out 2>&1 # done', "shell")
    for piece in [("tok-var", "FOO=1"), ("tok-cmd", "git"), ("tok-opt", "-m"), ("tok-str", '"msg $X"'),
                  ("tok-opt", "--amend"), ("tok-op", "&&"), ("tok-cmd", "echo"), ("tok-var", "${HOME}"),
                  ("tok-cmd", "grep"), ("tok-op", ">>"), ("tok-com", "# done")]:  # fmt: skip
        assert piece in shell, piece
    assert ("", " commit ") in shell  # an argument is a plain word
    assert colour('{"k": [1, true, null, "s"]}', "json") == [
        ("tok-punct", "{"), ("tok-key", '"k"'), ("tok-punct", ":"), ("", " "), ("tok-punct", "["), ("tok-num", "1"),
        ("tok-punct", ","), ("", " "), ("tok-lit", "true"), ("tok-punct", ","), ("", " "), ("tok-lit", "null"),
        ("tok-punct", ","), ("", " "), ("tok-str", '"s"'), ("tok-punct", "]}"),
    ]  # fmt: skip
    py = colour("def f():\n    return 'x'  # hi", "python")
    assert ("tok-kw", "def") in py and ("tok-str", "'x'") in py and ("tok-com", "# hi") in py
    js = colour("const x = 1; // c", "js")
    assert ("tok-kw", "const") in js and ("tok-num", "1") in js and ("tok-com", "// c") in js
    assert colour("plain <b>", None) == [("", "plain <b>")]
    assert colour("x" * (LIMIT + 1), "json") == [("", "x" * (LIMIT + 1))]


def test_language_by_extension() -> None:
    assert [language(p) for p in ("/a/b.py", "x.JS", "t.ts", "run.sh", "c.json", "Makefile", "a.py/b", None, 3)] == [
        "python", "js", "js", "shell", "json", None, None, None, None,
    ]  # fmt: skip


def test_a_diff_keeps_its_lines_and_colours_within() -> None:
    lines = diff_lines("--- a.py\n@@ -1 +1 @@\n-x = 1\n+def y(): pass  # \x1b[2J\n ctx", lang="python")
    assert [line.kind for line in lines] == ["file", "hunk", "del", "add", "ctx"]
    assert lines[0].pieces == () and lines[1].pieces == ()
    assert lines[3].pieces[:2] == (("", "+"), ("tok-kw", "def"))
    assert ("tok-com", "# \\x1b[2J") in lines[3].pieces  # made visible, piece by piece
    assert all("".join(p for _, p in line.pieces) == line.text for line in lines if line.pieces)
    assert diff_lines("+x = 1")[0].pieces == ()  # no language, no colouring


# --- on the page, over HTTP ------------------------------------------------------------------------

AGENT = Actor("agent", "claude-code", "mcp")
CONFIG = """
[store]
path = "signoff.db"

[approvers.alice]
telegram_user_id = 111

[[routes]]
name = "default"
approvers = ["alice"]
"""
SCRIPT = "<script>alert('x')</script><img src=x onerror=\"alert(1)\">"


@pytest.fixture
async def served(write_config: Callable[[str], Path]) -> AsyncIterator[Served]:
    async with open_app(load_config(write_config(CONFIG)), background=False) as app, serve_web(app) as s:
        yield s


async def file(app: App, action: str, details: Any) -> str:
    return (await app.service.request_approval(NewRequest(action=action, summary="Look", details=details), AGENT)).id


async def page_of(served: Served, rid: str) -> str:
    async with httpx.AsyncClient() as client:
        token = TOKEN_IN.search(await served.link("alice"))
        assert token is not None
        r = await client.post(f"{served.base}/web/login", data={"token": token.group(1)})
        assert r.status_code == 303
        unscope(client)
        page = await client.get(f"{served.base}/web/r/{rid}")
        assert page.status_code == 200
        return page.text


def assert_inert(page: str) -> None:
    """Agent text is text: no tag or handler of its own, and only colour.py's classes."""
    assert "<script>alert" not in page and "<img" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and not re.search(r"\son[a-z]+\s*=\s*\"", page)
    assert set(re.findall(r'class="(tok-[^"]*)"', page)) <= CLASSES


def block(page: str, cls: str) -> str:
    found = re.search(rf'<pre class="{cls}">(.*?)</pre>', page, re.DOTALL)
    assert found is not None, cls
    return found.group(1)


@pytest.mark.anyio
async def test_a_bash_command_is_coloured_and_stays_text(served: Served) -> None:
    command = f"echo '{SCRIPT}' && cat $HOME/x --all | grep -v x\r # </pre>{SCRIPT}"
    page = await page_of(served, await file(served.app, "Bash", {"command": command}))
    assert_inert(page)
    section = block(page, "code command")
    for shown in ('<span class="tok-prompt">$ </span><span class="tok-cmd">echo</span>',
                  '<span class="tok-op">&amp;&amp;</span>', '<span class="tok-var">$HOME</span>',
                  '<span class="tok-opt">--all</span>', '<span class="tok-cmd">grep</span>',
                  "<span class=\"tok-str\">&#39;&lt;script&gt;alert(&#39;</span>",
                  '<span class="tok-com"># &lt;/pre&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x '
                  "onerror=&#34;alert(1)&#34;&gt;</span>", "x\\x0d"):  # fmt: skip
        assert shown in section, shown


@pytest.mark.anyio
async def test_a_json_value_is_coloured_and_stays_text(served: Served) -> None:
    page = await page_of(served, await file(served.app, "refund", {"order": 7, "ok": True, "note": SCRIPT,
                                                                    SCRIPT: [None, 2.5]}))  # fmt: skip
    assert_inert(page)
    for shown in ('<span class="tok-num">7</span>', '<span class="tok-lit">true</span>',
                  '<span class="tok-lit">null</span>', '<span class="tok-num">2.5</span>',
                  '<span class="tok-str">&#34;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x '
                  'onerror=\\&#34;alert(1)\\&#34;&gt;&#34;</span>'):  # fmt: skip
        assert shown in page, shown


@pytest.mark.anyio
async def test_a_file_and_an_edit_are_coloured_by_extension(served: Served) -> None:
    content = f"// {SCRIPT}\nconst s = `{SCRIPT}`;\nlet n = 3;\n"
    page = await page_of(served, await file(served.app, "Write", {"file_path": "/w/a.js", "content": content}))
    assert_inert(page)
    assert '<span class="tok-kw">const</span>' in page and '<span class="tok-num">3</span>' in page
    assert '<span class="tok-com">// &lt;script&gt;' in page and '<span class="tok-str">`&lt;script&gt;' in page
    page = await page_of(served, await file(served.app, "Write", {"file_path": "/w/notes.txt", "content": SCRIPT}))
    assert_inert(page)
    assert "&lt;script&gt;alert" in block(page, "code file") and "tok-" not in block(page, "code file")

    edit = {"file_path": "/src/a.py", "old_string": "x = 1  # old", "new_string": f"def x(): return '{SCRIPT}'"}
    page = await page_of(served, await file(served.app, "Edit", edit))
    assert_inert(page)
    assert '<span class="del">-x = <span class="tok-num">1</span>  <span class="tok-com"># old</span></span>' in page
    assert '<span class="add">+<span class="tok-kw">def</span> x(): <span class="tok-kw">return</span> ' in page
