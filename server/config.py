"""The configuration: a TOML file loaded once into pydantic models (``extra="forbid"``).

``load_config(path)`` is the only entry point. Without a path it reads ``$SIGNOFF_CONFIG``,
and without that the embedded default (SQLite in the user's state directory, console
channel only). Every problem is reported at once as a ``ConfigError`` naming the file,
the key path (``routes[1].approverz``), what was expected and, for unknown keys, the
closest valid one.
"""

from __future__ import annotations

import logging
import os
import tomllib
import typing
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema

from .callback_targets import Target, allowed_target, legacy_prefix, parse_prefix
from .config_messages import closest, describe
from .dialect import DATABASE_URL_ENV, is_url
from .durations import format_duration, parse_duration
from .errors import ConfigError
from .paths import find_config, missing_config, store_path
from .scopes import Kind, kind_for, pattern_problem

log = logging.getLogger("signoff.config")

Scalar = str | int | float | bool
Duration = Annotated[
    float,
    BeforeValidator(
        lambda v: parse_duration(v) if isinstance(v, str) else v,
        # For editors (`signoff schema`): seconds, or text such as "30m" or "1h30m".
        json_schema_input_type=float | Annotated[str, Field(pattern=r"^\s*(\d+(\.\d+)?\s*[smhdSMHD]\s*)+$")],
    ),
]
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
    url: str | None = Field(
        default=None,
        pattern=r"^(?i:postgres(ql)?)://",
        description="PostgreSQL instead of SQLite: a libpq URL, postgresql://user@host:5432/db (TLS and other "
        "libpq options as ?sslmode=…); better given as $SIGNOFF_DATABASE_URL, which overrides [store]",
    )
    pool_size: int = Field(
        default=4,
        ge=1,
        le=64,
        description="PostgreSQL: connections each instance reads through (plus one that writes and one that listens)",
    )


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535, description="0 picks a free port (logged at start-up)")
    auth_token_env: str | None = Field(
        default="SIGNOFF_HTTP_TOKEN", description="environment variable holding the HTTP bearer token"
    )
    auth_identity: str = Field(default="http-client", min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
    stdio_identity: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]+$",
        description="file every stdio (and hook) request as this requester instead of the name the client gives itself",
    )
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


class SlackConfig(_Model):
    mode: Literal["socket", "http"] = Field(
        default="socket",
        description="socket: Socket Mode (an app-level token, no public URL); http: Slack POSTs to `signoff serve`",
    )
    bot_token_env: str = Field(default="SIGNOFF_SLACK_BOT_TOKEN", description="the variable holding the xoxb- token")
    app_token_env: str = Field(
        default="SIGNOFF_SLACK_APP_TOKEN", description="the variable holding the xapp- token (Socket Mode)"
    )
    signing_secret_env: str = Field(
        default="SIGNOFF_SLACK_SIGNING_SECRET", description="the variable holding the signing secret (HTTP mode)"
    )
    api_base_url: str = "https://slack.com/api/"
    lease_ttl: Duration = Field(
        default=15.0, ge=3, le=300, description="how soon another process takes Slack over when its holder dies"
    )
    request_timeout: Duration = Field(default=10.0, ge=1, le=120, description="how long one Web API call may take")
    path: str = Field(
        default="/slack/events", pattern=r"^/[A-Za-z0-9/_-]*$", description="HTTP mode: where `signoff serve` listens"
    )


class WebConfig(_Model):
    enabled: bool = Field(default=True, description="serve the web inbox at /web on `signoff serve`")
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+/?$",
        description="the address people open signoff at, scheme and host only, e.g. https://signoff.example.com "
        "(sign-in links use it; the inbox is at /web there); without it the inbox answers on loopback only",
    )
    session_ttl: Duration = Field(
        default=12 * 3600.0, ge=300, le=30 * 86400, description="how long a web session lasts"
    )


_SLACK_USER = r"^[UW][A-Z0-9]{2,20}$"
_SLACK_CHANNEL = r"^[CGD][A-Z0-9]{2,20}$"


class ApproverConfig(_Model):
    telegram_user_id: int | None = None
    telegram_chat_id: int | None = None
    slack_user_id: str | None = Field(default=None, pattern=_SLACK_USER, description="the approver's Slack member id")
    slack_channel: str | None = Field(
        default=None, pattern=_SLACK_CHANNEL, description="post their prompts in this channel instead of a DM"
    )
    identities: list[str] = Field(
        default_factory=list,
        description="requested_by values (globs) that are this person: they cannot approve their own requests",
    )
    quiet_hours: str | None = Field(
        default=None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$",
        description="'22:00-07:00': prompts of non-urgent routes wait until the end",
    )
    timezone: str = Field(default="UTC", description="the IANA time zone of quiet_hours, e.g. 'Europe/Berlin'")


class DefaultsConfig(_Model):
    timeout: Duration = Field(default=3600.0, gt=0)
    on_timeout: Outcome = "reject"
    digest_threshold: int = Field(
        default=5, ge=1, le=100, description="more pending prompts than this in one chat are gathered into a digest"
    )


class EscalationLevel(_Model):
    after: Duration = Field(gt=0, description="time since the request was filed")
    approvers: list[str] = Field(min_length=1)


class GrantScope(_Model):
    """Which requests a grant covers besides route, action, requester and working directory:
    ``details[argument]`` must be covered by the pattern (of ``patterns``) that the granting
    request matched — word by word for commands, segment by segment for paths (``scopes.py``)."""

    argument: str = Field(min_length=1, max_length=64)
    patterns: list[str] = Field(min_length=1)
    match: Literal["command", "path", "exact"] | None = Field(
        default=None,
        description="how values are compared; default: 'command' for command, 'path' for *path, else 'exact'",
    )

    @property
    def kind(self) -> Kind:
        return self.match or kind_for(self.argument)


class CallbacksConfig(_Model):
    allowed_urls: list[str] = Field(
        default_factory=list,
        description="URL prefixes decision callbacks may be sent to: scheme, host, port and path, e.g. "
        "'https://hooks.example.com/signoff/' (a path ending in '/' allows everything below it)",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="deprecated: host names, each meaning 'https://HOST/' (https, default port, any path); "
        "write allowed_urls instead",
    )
    secret_env: str = "SIGNOFF_CALLBACK_SECRET"
    timeout: Duration = Field(default=10.0, ge=1, le=120)

    def prefixes(self) -> list[Target]:
        """Every prefix a callback URL may start with (the deprecated ``allowed_hosts`` mapped)."""
        entries = [(u, parse_prefix) for u in self.allowed_urls] + [(h, legacy_prefix) for h in self.allowed_hosts]
        out: list[Target] = []
        for text, parse in entries:
            try:
                out.append(parse(text))
            except ValueError:  # refused at load; never widens anything
                continue
        return out

    def deprecations(self) -> list[str]:
        """What to change in ``[callbacks]`` before the next release (empty when nothing)."""
        if not self.allowed_hosts:
            return []
        suggested = ", ".join(f'"https://{"NAME." + h[2:] if h.startswith("*.") else h}/"' for h in self.allowed_hosts)
        return [f"callbacks.allowed_hosts is deprecated; write allowed_urls = [{suggested}] instead (with the path, "
                "port and scheme your receiver uses). Until then each host means https on the default port, any "
                "path."]  # fmt: skip


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
    reminder: Duration | None = Field(default=None, ge=60)
    escalation: list[EscalationLevel] = Field(default_factory=list)
    quorum: int = Field(default=1, ge=1, le=20)
    reject_quorum: int = Field(default=1, ge=1, le=20)
    allow_self_approval: bool = False
    grant_options: list[str] = Field(default_factory=list, max_length=3)
    grant_scope: GrantScope | None = None
    grant_max_uses: int | None = Field(default=None, ge=1)
    allow_bulk: bool = False
    urgent: bool = False
    allow_edit: bool = True
    callback_url: str | None = None

    @property
    def policy_keys(self) -> list[str]:
        """The keys set that only mean something when a human decides."""
        keys = ("reminder", "escalation", "quorum", "reject_quorum", "allow_self_approval", "grant_options",
                "grant_scope", "grant_max_uses", "allow_bulk", "urgent", "allow_edit")  # fmt: skip
        return [k for k in keys if k in self.model_fields_set]


_NAME = r"^[A-Za-z0-9-]+(_[A-Za-z0-9-]+)*$"  # no "__": mcp__NAME__TOOL names one server and one tool


class UpstreamConfig(_Model):
    """An MCP server ``signoff proxy --name NAME`` puts behind approvals: a command (stdio) or a URL."""

    name: str = Field(pattern=_NAME, max_length=64, description="the server's name: tools become mcp__NAME__TOOL")
    command: str | None = Field(default=None, min_length=1, description="stdio: the program to run")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments")
    env: dict[str, str] = Field(default_factory=dict, description="stdio: extra environment variables for it")
    cwd: str | None = Field(default=None, description="stdio: the folder to run it in (default: the proxy's)")
    url: str | None = Field(default=None, pattern=r"^https?://", description="streamable HTTP: the server's URL")
    headers: dict[str, str] = Field(
        default_factory=dict, description="streamable HTTP: headers sent with every request"
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description='streamable HTTP: headers whose value is read from an environment variable, e.g. { Authorization = "FS_AUTH" }',
    )
    timeout: Duration = Field(default=600.0, gt=0, le=86400, description="how long one forwarded request may take")


GRANT_SESSION = "session"
MAX_GRANT = 7 * 86400.0


def grant_seconds(option: str) -> float | None:
    """A grant option's length in seconds; None for "session" (the requester's MCP session)."""
    return None if option == GRANT_SESSION else parse_duration(option)


class Config(_Model):
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    telegram: TelegramConfig = TelegramConfig()
    slack: SlackConfig = SlackConfig()
    web: WebConfig = WebConfig()
    approvers: dict[str, ApproverConfig] = Field(default_factory=dict)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    defaults: DefaultsConfig = DefaultsConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    routes: list[RouteConfig] = Field(min_length=1)
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    # Where the configuration came from, for messages; not a key of the file.
    source: SkipJsonSchema[str] = Field(default="<embedded default>", exclude=True)
    # Which lookup rule chose it (--config, $SIGNOFF_CONFIG, the user config file, embedded default).
    origin: SkipJsonSchema[str] = Field(default="embedded default", exclude=True)

    @property
    def db_path(self) -> Path:
        """The SQLite file, absolute (unused when ``database`` is a PostgreSQL URL)."""
        assert self.store.path is not None  # load_config always resolves it
        return self.store.path

    @property
    def database(self) -> Path | str:
        """Where the store is: the PostgreSQL URL when there is one, else the SQLite file."""
        return self.store.url or self.db_path

    @property
    def database_label(self) -> str:
        """The store, for messages and logs: the SQLite file, or PostgreSQL's host and database (no password)."""
        from .pg import describe

        return f"PostgreSQL {describe(self.store.url)}" if self.store.url else str(self.db_path)

    def route(self, name: str) -> RouteConfig | None:
        return next((r for r in self.routes if r.name == name), None)

    def expand(self, names: typing.Iterable[str]) -> list[str]:
        """Approver names with every group replaced by its members; each name once, in order."""
        out: list[str] = []
        for name in names:
            for who in self.groups.get(name, [name]):
                if who not in out:
                    out.append(who)
        return out


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and check the configuration; raise ``ConfigError`` listing every problem."""
    file, origin = find_config(path)
    if file is None:
        config = parse_config(DEFAULT_CONFIG_TOML, source="<embedded default>", base_dir=None)
    else:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(str(file), [missing_config(file, origin)]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(file), [f"cannot read the file: {exc}"]) from None
        config = parse_config(text, source=str(file), base_dir=file.resolve().parent)
    return config.model_copy(update={"origin": origin})


NOT_KEYS = frozenset({"source", "origin"})  # Config fields signoff fills in, not keys of the file
MAX_CONFIG_DEPTH = 16  # the deepest setting (routes[].match.metadata.KEY.gt) sits 6 levels down
_TOO_DEEP = (
    f"arrays or tables are nested more than {MAX_CONFIG_DEPTH} levels deep; no signoff setting needs more than a "
    "few, so remove the extra brackets"
)


def _too_deep(raw: dict[str, Any]) -> str | None:
    """The top-level key under which ``raw`` nests deeper than ``MAX_CONFIG_DEPTH`` (no recursion)."""
    stack: list[tuple[str, Any, int]] = [(key, value, 1) for key, value in raw.items()]
    while stack:
        top, value, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            from .sanitize import visible

            return visible(top if len(top) <= 64 else top[:63] + "…", one_line=True)
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((top, child, depth + 1) for child in children)
    return None


def parse_config(text: str, *, source: str, base_dir: Path | None) -> Config:
    """Parse TOML text into a checked ``Config``; relative paths resolve against ``base_dir``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    except RecursionError:  # tomllib recurses once per level of arrays and inline tables
        raise ConfigError(source, [_TOO_DEEP]) from None
    if (deep := _too_deep(raw)) is not None:
        raise ConfigError(source, [f"{deep}: {_TOO_DEEP}"])
    if internal := sorted(NOT_KEYS & raw.keys()):
        raise ConfigError(source, [f"{key}: unknown key; remove it" for key in internal])
    try:
        config = Config.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise ConfigError(source, [describe(err, Config) for err in exc.errors()]) from None
    problems = _cross_check(config)
    if problems:
        raise ConfigError(source, problems)
    if config.store.url is not None and config.store.path is not None:
        raise ConfigError(source, ["store: both path (SQLite) and url (PostgreSQL) are set; keep the one you use"])
    url = os.environ.get(DATABASE_URL_ENV) or config.store.url
    if url is not None and not is_url(url):
        raise ConfigError(source, [f"${DATABASE_URL_ENV}: not a PostgreSQL URL; give postgresql://user@host:5432/db"])
    store = config.store.model_copy(update={"path": store_path(config.store.path, base_dir), "url": url})
    return config.model_copy(update={"store": store})


def _cross_check(config: Config) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    known = sorted(config.approvers)
    for i, route in enumerate(config.routes):
        key = f"routes[{i}]"
        if route.name in seen:
            problems.append(f"{key}.name: route name {route.name!r} is used twice; give each route its own name")
        seen.add(route.name)
        names = known + sorted(config.groups)
        for j, who in enumerate(route.approvers):
            problems += _unknown(f"{key}.approvers[{j}]", who, config, names)
        for j, level in enumerate(route.escalation):
            for k, who in enumerate(level.approvers):
                problems += _unknown(f"{key}.escalation[{j}].approvers[{k}]", who, config, names)
        if route.auto is not None and route.approvers:
            problems.append(
                f"{key}: a route with auto = {route.auto!r} decides by itself; remove 'approvers' or remove 'auto'"
            )
        if route.auto is not None and (route.timeout is not None or route.on_timeout is not None):
            problems.append(f"{key}: a route with auto = {route.auto!r} never waits; remove 'timeout' and 'on_timeout'")
        if route.auto is not None and route.policy_keys:
            problems.append(f"{key}: a route with auto = {route.auto!r} never asks anyone; remove "
                            f"{', '.join(repr(k) for k in route.policy_keys)}")  # fmt: skip
        else:
            problems += _check_policy(key, route, config)
    tg = config.telegram
    if tg.mode == "webhook" and not tg.webhook_url:
        problems.append("telegram.webhook_url: mode = 'webhook' needs the public URL Telegram posts to, e.g. "
                        "webhook_url = \"https://example.com/signoff/telegram\"")  # fmt: skip
    if config.slack.path.rstrip("/") in ("", "/mcp", "/metrics", "/healthz") or config.slack.path.startswith("/mcp/"):
        problems.append(f"slack.path: {config.slack.path!r} is one of signoff serve's own paths; use its own, "
                        "e.g. path = \"/slack/events\"")  # fmt: skip
    if tg.webhook_url and not tg.webhook_url.startswith(("https://", "http://")):
        problems.append(f"telegram.webhook_url: {tg.webhook_url!r} is not a URL; write https://host/path")
    for name, approver in config.approvers.items():
        if approver.telegram_user_id is None and approver.telegram_chat_id is not None:
            problems.append(f"approvers.{name}: telegram_chat_id needs telegram_user_id (who may press the buttons)")
        if approver.slack_user_id is None and approver.slack_channel is not None:
            problems.append(f"approvers.{name}: slack_channel needs slack_user_id (who may press the buttons)")
        if approver.timezone != "UTC" or approver.quiet_hours:
            try:
                zoneinfo.ZoneInfo(approver.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                problems.append(f"approvers.{name}.timezone: unknown time zone {approver.timezone!r}; "
                                "write an IANA name such as 'Europe/Berlin' or 'America/New_York'")  # fmt: skip
    for group, members in config.groups.items():
        if group in config.approvers:
            problems.append(f"groups.{group}: {group!r} is also an approver's name; rename the group")
        for j, who in enumerate(members):
            if who not in config.approvers:
                hint = closest(who, known)
                fix = f"did you mean {hint!r}?" if hint else "groups list approvers, not other groups"
                problems.append(f"groups.{group}[{j}]: unknown approver {who!r}; {fix}")
    problems += _callbacks_problems(config.callbacks)
    problems += _upstream_problems(config.upstreams)
    return problems


def _upstream_problems(upstreams: list[UpstreamConfig]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for i, up in enumerate(upstreams):
        key = f"upstreams[{i}]"
        if up.name in seen:
            problems.append(f"{key}.name: upstream name {up.name!r} is used twice; give each upstream its own name")
        seen.add(up.name)
        if (up.command is None) == (up.url is None):
            problems.append(f"{key}: set exactly one of 'command' (a stdio server) or 'url' (a streamable-HTTP one)")
        elif up.command is not None and (up.headers or up.headers_env):
            problems.append(f"{key}: 'headers' and 'headers_env' are for a 'url' upstream; remove them")
        elif up.url is not None and (up.args or up.env or up.cwd):
            problems.append(f"{key}: 'args', 'env' and 'cwd' are for a 'command' upstream; remove them")
    return problems


def _callbacks_problems(callbacks: CallbacksConfig) -> list[str]:
    """``[callbacks]``: every prefix well-formed; the deprecated ``allowed_hosts`` logged (or refused
    next to ``allowed_urls``, so the operator never wonders which one applies)."""
    problems: list[str] = []
    for j, url in enumerate(callbacks.allowed_urls):
        try:
            parse_prefix(url)
        except ValueError as exc:
            has_fix = any(word in str(exc) for word in ("write", "remove", "encode"))
            fix = "" if has_fix else "; write e.g. 'https://hooks.example.com/signoff/'"
            problems.append(f"callbacks.allowed_urls[{j}]: {_short(url)}: {exc}{fix}")
    for j, host in enumerate(callbacks.allowed_hosts):
        try:
            legacy_prefix(host)
        except ValueError as exc:
            problems.append(f"callbacks.allowed_hosts[{j}]: {_short(host)}: {exc}; write 'hooks.example.com' — or "
                            "better, move to allowed_urls = [\"https://hooks.example.com/signoff/\"]")  # fmt: skip
    if callbacks.allowed_hosts and callbacks.allowed_urls:
        problems.append("callbacks: allowed_hosts is deprecated and allowed_urls is set; move each host into "
                        "allowed_urls (as 'https://HOST/…') and remove allowed_hosts")  # fmt: skip
    elif not problems:
        for warning in callbacks.deprecations():
            log.warning("%s", warning)
    return problems


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def identity_warnings(config: Config) -> list[str]:
    """Rules that trust a requester name a stdio client chooses itself (no pinned identity)."""
    if config.server.stdio_identity is not None:
        return []
    fix = ("over stdio the requester is the name the MCP client gives itself, which any local process can "
           "claim; pin it with [server] stdio_identity = \"NAME\" or `signoff mcp --identity NAME`")  # fmt: skip
    warnings = [f"routes[{i}].match.requested_by = {r.match.requested_by!r}: {fix}"
                for i, r in enumerate(config.routes) if r.match is not None and r.match.requested_by is not None]  # fmt: skip
    warnings += [f"approvers.{name}.identities = {a.identities!r}: {fix}"
                 for name, a in config.approvers.items() if a.identities]  # fmt: skip
    return warnings


def _unknown(key: str, who: str, config: Config, names: list[str]) -> list[str]:
    if who in config.approvers or who in config.groups:
        return []
    hint = closest(who, names)
    fix = f"did you mean {hint!r}?" if hint else "add an [approvers.NAME] table or a [groups] entry for it"
    return [f"{key}: unknown approver or group {who!r}; {fix} (known: {', '.join(names) or 'none'})"]


def _check_policy(key: str, route: RouteConfig, config: Config) -> list[str]:
    """The rules of a human-decided route that need more than one key to check."""
    problems: list[str] = []
    timeout = route.timeout or config.defaults.timeout
    base = config.expand(a for a in route.approvers if a in config.approvers or a in config.groups)
    everyone = config.expand([*base, *(a for lv in route.escalation for a in lv.approvers
                                       if a in config.approvers or a in config.groups)])  # fmt: skip
    if route.quorum > 1 and route.quorum > len(everyone):
        problems.append(f"{key}.quorum: {route.quorum} approvals needed but the route has only {len(everyone)} "
                        "approver(s), escalation included; add approvers or lower the quorum")  # fmt: skip
    if route.reject_quorum > 1 and route.reject_quorum > len(everyone):
        problems.append(f"{key}.reject_quorum: {route.reject_quorum} rejections needed but the route has only "
                        f"{len(everyone)} approver(s); lower it")  # fmt: skip
    last = 0.0
    for j, level in enumerate(route.escalation):
        if level.after <= last:
            problems.append(f"{key}.escalation[{j}].after: each level must come after the one before it")
        if level.after >= timeout:
            problems.append(f"{key}.escalation[{j}].after: {format_duration(level.after)} is not before the route's "
                            f"timeout ({format_duration(timeout)}), so it would never fire; shorten it or lengthen "
                            "the timeout")  # fmt: skip
        last = level.after
    for j, option in enumerate(route.grant_options):
        try:
            seconds = grant_seconds(option)
        except ValueError:
            problems.append(f"{key}.grant_options[{j}]: {option!r} is neither a duration ('30m', '2h') nor 'session'")
            continue
        if seconds is not None and seconds > MAX_GRANT:
            problems.append(f"{key}.grant_options[{j}]: grants last at most 7 days; shorten {option!r}")
    if route.grant_options and route.quorum > 1:
        problems.append(f"{key}.grant_options: a route that needs {route.quorum} approvals cannot be granted by one "
                        "person; remove grant_options or the quorum")  # fmt: skip
    if route.grant_scope is not None:
        for j, pattern in enumerate(route.grant_scope.patterns):
            why = pattern_problem(route.grant_scope.kind, pattern)
            if why is not None:
                problems.append(f"{key}.grant_scope.patterns[{j}]: {pattern!r} is not a {route.grant_scope.kind} "
                                f"pattern: {why}")  # fmt: skip
    if (route.grant_scope or route.grant_max_uses) and not route.grant_options:
        problems.append(f'{key}: grant_scope and grant_max_uses need grant_options, e.g. grant_options = ["30m"]')
    if route.callback_url is not None:
        problems += [f"{key}.callback_url: {p}" for p in callback_url_problems(route.callback_url, config)]
    return problems


def callback_url_problems(url: str, config: Config) -> list[str]:
    """Why ``url`` may not receive decision callbacks (empty when it may): it must parse strictly
    and start with one of ``[callbacks] allowed_urls`` (see ``callback_targets``). The reason
    never repeats the URL, so an agent's long or hostile URL is not echoed back."""
    try:
        allowed_target(url, config.callbacks.prefixes())
    except ValueError as exc:
        return [str(exc)]
    return []
