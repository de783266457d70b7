"""signoff: an MCP server that lets AI agents ask a human before they act.

The installed package is ``signoff`` alone: ``signoff.server`` (the core, the MCP tools, the CLI)
and ``signoff.adapters`` (the channels). In the repository those live in ``server/`` and
``adapters/`` at the top; ``signoff/server`` and ``signoff/adapters`` are symlinks to them, and
the wheel build maps the folders into the package (pyproject: ``[tool.hatch.build.targets.wheel]``).
Import them as ``signoff.server…``, never as a top-level ``server``.
"""
