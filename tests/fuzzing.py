"""For Hypothesis tests of async code: one event loop and one database for all the examples
(Hypothesis runs them synchronously), closed when the test module is done."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from signoff.server.app import App, open_app
from signoff.server.config import Config, parse_config


class OneLoop:
    def __init__(self, config_text: str) -> None:
        self.config_text = config_text
        self.runner: asyncio.Runner | None = None
        self.app: App | None = None
        self.config: Config | None = None

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the shared loop, opening the app on the first call."""
        if self.runner is None:
            self.runner = asyncio.Runner()
            self.dir = tempfile.TemporaryDirectory()
            self.config = parse_config(self.config_text, source="fuzz", base_dir=Path(self.dir.name))
            self._cm = open_app(self.config, background=False)
            self.app = self.runner.run(self._cm.__aenter__())
        return self.runner.run(coro)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.run(self._cm.__aexit__(None, None, None))
            self.runner.close()
            self.dir.cleanup()
            self.runner = None
