"""``signoff doctor``'s Slack checks: the bot token (``auth.test``), its scopes, the app-level
token or signing secret the mode needs, and that every approver can be reached."""

from __future__ import annotations

import os

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from signoff.server.config import Config

NEEDED_SCOPES = ("chat:write", "im:write", "commands")


async def check(config: Config, token: str) -> list[tuple[bool, str]]:
    """One (ok, line) per check, each line saying what to do when it is not ok."""
    settings = config.slack
    results: list[tuple[bool, str]] = []
    client = AsyncWebClient(token=token, base_url=settings.api_base_url, timeout=int(settings.request_timeout))
    try:
        auth = await client.auth_test()
        results.append((True, f"bot {auth.get('user')} answers in workspace {auth.get('team')} (auth.test)"))
        granted = {s.strip() for s in (auth.headers.get("x-oauth-scopes") or "").split(",") if s.strip()}
        missing = [s for s in NEEDED_SCOPES if s not in granted]
        if missing:
            results.append((False, f"the bot token lacks the scopes {', '.join(missing)}; add them under OAuth & "
                                   "Permissions (or recreate the app from deploy/slack/manifest.json) and reinstall"))  # fmt: skip
        else:
            results.append((True, f"scopes: {', '.join(NEEDED_SCOPES)}"))
        for name, approver in config.approvers.items():
            if approver.slack_user_id is None:
                continue
            place = approver.slack_channel or approver.slack_user_id
            try:
                if approver.slack_channel is None:
                    await client.conversations_open(users=[approver.slack_user_id])
                    results.append((True, f"approver {name}: a DM with {place} can be opened"))
                else:
                    results.append((True, f"approver {name}: prompts go to channel {place} (invite the app there)"))
            except SlackApiError as exc:
                results.append((False, f"approver {name}: cannot open a DM with {place} "
                                       f"({exc.response.get('error')}); check slack_user_id (a member id, U…)"))  # fmt: skip
    except SlackApiError as exc:
        error = exc.response.get("error")
        results.append((False, f"the token in ${settings.bot_token_env} was refused ({error}); copy the Bot User "
                               "OAuth Token (xoxb-…) from the app's OAuth & Permissions page"))  # fmt: skip
        return results
    except Exception as exc:  # network, or a malformed answer
        results.append((False, f"cannot reach {settings.api_base_url} ({type(exc).__name__}); check the network"))
        return results
    app_token = os.environ.get(settings.app_token_env, "").strip()
    if settings.mode == "socket" and not app_token:
        results.append((False, f"${settings.app_token_env} is not set: Socket Mode needs an app-level token "
                               "(xapp-…, scope connections:write) from the app's Basic Information page"))  # fmt: skip
    elif settings.mode == "socket":
        try:  # asks for a Socket Mode URL (no connection is made): the token is good and Socket Mode is on
            await client.apps_connections_open(app_token=app_token)
            results.append((True, f"Socket Mode: the app-level token in ${settings.app_token_env} is accepted"))
        except SlackApiError as exc:
            error = exc.response.get("error")
            results.append((False, f"Socket Mode: the app-level token in ${settings.app_token_env} was refused ({error}); "
                                   "copy an app-level token (xapp-…, scope connections:write) from the app's Basic "
                                   "Information page, and check that Socket Mode is on"))  # fmt: skip
        except Exception as exc:
            results.append((False, f"Socket Mode: cannot ask Slack for a connection ({type(exc).__name__})"))
    if settings.mode == "http" and not os.environ.get(settings.signing_secret_env, "").strip():
        results.append((False, f"${settings.signing_secret_env} is not set: HTTP mode verifies every request "
                               "with the app's signing secret (Basic Information page)"))  # fmt: skip
    return results
