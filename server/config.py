"""The configuration: a TOML file loaded once into pydantic models (``extra="forbid"``).

``load_config(path)`` is the only entry point. Without a path it reads ``$SIGNOFF_CONFIG``,
and without that the embedded default (SQLite in the user's state directory, console
channel only). Every problem is reported at once as a ``ConfigError`` naming the file,
the key path (``routes[1].approverz``), what was expected and, for unknown keys, the
closest valid one.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .durations import parse_duration
from .errors import ConfigError
from .paths import config_file, store_path

Scalar = str | int | float | bool
Duration = Annotated[float, BeforeValidator(lambda v: parse_duration(v) if isinstance(v, str) else v)]
Outcome = Literal["approve", "reject"]

DEFAULT_CONFIG_TOML = """\
# The embedded default: one SQLite file in the user's state directory, the console channel.
# Every request goes to the "default" route and is decided with `signoff approve ID`.
[defaults]
timeout = "1h"
on_timeout = "reject"

[[routes]]
name = "default"
"""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StoreConfig(_Model):
    path: Path | None = Field(
        default=None, description="SQLite file; relative paths resolve against the config file's folder"
    )


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535, description="0 picks a free port (logged at start-up)")
    auth_token_env: str | None = Field(
        default="SIGNOFF_HTTP_TOKEN", description="environment variable holding the HTTP bearer token"
    )
    auth_identity: str = Field(default="http-client", min_length=1, max_length=100)
    max_wait: Duration = Field(default=50.0, gt=0, le=3600)


class TelegramConfig(_Model):
    token_env: str = "SIGNOFF_TELEGRAM_TOKEN"
    api_base_url: str = "https://api.telegram.org/bot"
    lease_ttl: Duration = Field(
        default=15.0, ge=3, le=300, description="how soon another process takes the bot over when its holder dies"
    )
    request_timeout: Duration = Field(default=10.0, ge=1, le=120, description="how long one Bot API call may take")
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = Field(default=None, description="the public HTTPS URL Telegram posts updates to")
    webhook_listen: str = Field(default="127.0.0.1:8443", pattern=r"^\[?[^\]]*\]?:\d{1,5}$")


class ApproverConfig(_Model):
    telegram_user_id: int | None = None
    telegram_chat_id: int | None = None


class DefaultsConfig(_Model):
    timeout: Duration = Field(default=3600.0, gt=0)
    on_timeout: Outcome = "reject"


class Comparison(_Model):
    """One metadata condition; a bare value in the file means ``{ eq = value }``."""

    gt: int | float | None = None
    gte: int | float | None = None
    lt: int | float | None = None
    lte: int | float | None = None
    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")

    @model_validator(mode="after")
    def _not_empty(self) -> Comparison:
        if not self.model_fields_set:
            raise ValueError("a comparison needs at least one of gt, gte, lt, lte, eq, ne, in")
        return self


class Match(_Model):
    action: str | list[str] | None = None
    requested_by: str | None = None
    metadata: dict[str, Comparison] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_values_mean_eq(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
            meta = {k: v if isinstance(v, dict) else {"eq": v} for k, v in data["metadata"].items()}
            data = {**data, "metadata": meta}
        return data


class RouteConfig(_Model):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    match: Match | None = None
    approvers: list[str] = Field(default_factory=list)
    timeout: Duration | None = Field(default=None, gt=0)
    on_timeout: Outcome | None = None
    auto: Outcome | None = None


class Config(_Model):
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    telegram: TelegramConfig = TelegramConfig()
    approvers: dict[str, ApproverConfig] = Field(default_factory=dict)
    defaults: DefaultsConfig = DefaultsConfig()
    routes: list[RouteConfig] = Field(min_length=1)
    # Where the configuration came from, for messages; not a key of the file.
    source: str = Field(default="<embedded default>", exclude=True)

    @property
    def db_path(self) -> Path:
        """The SQLite file, absolute."""
        assert self.store.path is not None  # load_config always resolves it
        return self.store.path

    def route(self, name: str) -> RouteConfig | None:
        return next((r for r in self.routes if r.name == name), None)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and check the configuration; raise ``ConfigError`` listing every problem."""
    file = config_file(path)
    if file is None:
        return parse_config(DEFAULT_CONFIG_TOML, source="<embedded default>", base_dir=None)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(file), ["the file does not exist; create it (see config.example.toml)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), [f"cannot read the file: {exc}"]) from None
    return parse_config(text, source=str(file), base_dir=file.resolve().parent)


def parse_config(text: str, *, source: str, base_dir: Path | None) -> Config:
    """Parse TOML text into a checked ``Config``; relative paths resolve against ``base_dir``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    try:
        config = Config.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err) for err in exc.errors()]) from None
    problems = _cross_check(config)
    if problems:
        raise ConfigError(source, problems)
    return config.model_copy(update={"store": StoreConfig(path=store_path(config.store.path, base_dir))})


def _cross_check(config: Config) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    known = sorted(config.approvers)
    for i, route in enumerate(config.routes):
        key = f"routes[{i}]"
        if route.name in seen:
            problems.append(f"{key}.name: route name {route.name!r} is used twice; give each route its own name")
        seen.add(route.name)
        for j, who in enumerate(route.approvers):
            if who not in config.approvers:
                hint = _closest(who, known)
                fix = f"did you mean {hint!r}?" if hint else "add an [approvers.NAME] table for it"
                problems.append(
                    f"{key}.approvers[{j}]: unknown approver {who!r}; {fix} (known: {', '.join(known) or 'none'})"
                )
        if route.auto is not None and route.approvers:
            problems.append(
                f"{key}: a route with auto = {route.auto!r} decides by itself; remove 'approvers' or remove 'auto'"
            )
        if route.auto is not None and (route.timeout is not None or route.on_timeout is not None):
            problems.append(f"{key}: a route with auto = {route.auto!r} never waits; remove 'timeout' and 'on_timeout'")
    tg = config.telegram
    if tg.mode == "webhook" and not tg.webhook_url:
        problems.append("telegram.webhook_url: mode = 'webhook' needs the public URL Telegram posts to, e.g. "
                        "webhook_url = \"https://example.com/signoff/telegram\"")  # fmt: skip
    if tg.webhook_url and not tg.webhook_url.startswith(("https://", "http://")):
        problems.append(f"telegram.webhook_url: {tg.webhook_url!r} is not a URL; write https://host/path")
    for name, approver in config.approvers.items():
        if approver.telegram_user_id is None and approver.telegram_chat_id is not None:
            problems.append(f"approvers.{name}: telegram_chat_id needs telegram_user_id (who may press the buttons)")
    return problems


def _closest(word: str, choices: typing.Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(err: Any) -> str:
    loc = tuple(p for p in err["loc"] if p not in _UNION_TAGS)
    key = _key_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        hint = _closest(str(loc[-1]), valid)
        fix = f"did you mean {hint!r}?" if hint else f"valid keys here: {', '.join(valid)}"
        return f"{key}: unknown key; {fix}"
    if kind == "missing":
        return f"{key}: required key is missing"
    given = err.get("input")
    shown = f" (got {given!r})" if given is not None and not isinstance(given, dict | list) else ""
    return f"{key}: {err['msg'].removeprefix('Value error, ')}{shown}"


_UNION_TAGS = {"str", "int", "float", "bool", "list[str]", "list[...]", "function-before[<lambda>(), float]"}


def _valid_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts, by walking the annotations of ``Config``."""
    tp: Any = Config
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return []
    model = _as_model(tp)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items() if n != "source"]


def _strip(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = next((a for a in args if _as_model(a) or typing.get_origin(a) in (list, dict)), args[0])
        else:
            return tp


def _as_model(tp: Any) -> type[BaseModel] | None:
    tp = _strip(tp) if typing.get_origin(tp) else tp
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _step(tp: Any, part: int | str) -> Any:
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if origin is list and isinstance(part, int):
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    model = _as_model(tp)
    if model is not None and isinstance(part, str):
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
    return None
