"""A small MCP server written with the SDK, run as a real subprocess behind ``signoff proxy``.

``python -m tests.upstream_server FOLDER``: notes are files in FOLDER. Tools: ``read_note``
(readOnlyHint), ``write_note`` (destructiveHint: writes a file), ``slow`` (waits until
cancelled, leaving ``slow.started`` / ``slow.cancelled`` marks in FOLDER), ``crash`` (the
process dies mid-call), ``ask`` (asks the client a question by elicitation); a resource, a
resource template, a prompt and completions for it. Logs go to stderr only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import Completion, PromptReference, ResourceTemplateReference, ToolAnnotations
from pydantic import BaseModel

FOLDER = Path(sys.argv[1] if len(sys.argv) > 1 else ".")

mcp: MCPServer = MCPServer("notes", version="1.2.3", instructions="Notes in a folder.")


@mcp.tool(annotations=ToolAnnotations(title="Read a note", read_only_hint=True))
def read_note(name: str) -> str:
    """Read the note NAME."""
    return (FOLDER / name).read_text()


@mcp.tool(annotations=ToolAnnotations(title="Write a note", read_only_hint=False, destructive_hint=True))
def write_note(name: str, text: str) -> str:
    """Write TEXT to the note NAME, replacing it."""
    (FOLDER / name).write_text(text)
    return f"wrote {len(text)} characters to {name}"


@mcp.tool()
async def slow(ctx: Context) -> str:
    """Wait until cancelled, reporting progress once."""
    (FOLDER / "slow.started").write_text("1")
    await ctx.report_progress(1, 2, "halfway")
    try:
        await anyio.sleep_forever()
    finally:
        (FOLDER / "slow.cancelled").write_text("1")
    return "never"


@mcp.tool()
def crash() -> str:
    """Die mid-call."""
    os._exit(3)


class Answer(BaseModel):
    colour: str


async def which_colour() -> Elicit[Answer]:
    return Elicit("Which colour?", Answer)


@mcp.tool()
async def ask(answer: Annotated[Answer, Resolve(which_colour)]) -> str:
    """Ask the client for a colour (elicitation, on either protocol era)."""
    return f"colour: {answer.colour}"


@mcp.resource("note://readme", mime_type="text/plain")
def readme() -> str:
    """The folder's readme."""
    return "hello from upstream"


@mcp.resource("note://{name}")
def note(name: str) -> str:
    """A note by name."""
    return (FOLDER / name).read_text()


@mcp.prompt()
def review(topic: str) -> str:
    """Review the notes about TOPIC."""
    return f"Please review the notes about {topic}."


@mcp.completion()
async def complete(
    ref: PromptReference | ResourceTemplateReference, argument: object, context: object
) -> Completion | None:
    return Completion(values=["apples", "apricots"])


if __name__ == "__main__":
    mcp.run()
