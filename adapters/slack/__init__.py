"""The Slack channel (slack_sdk): prompts with Block Kit buttons, decisions from Slack."""

from signoff.server.config import SlackConfig

from .channel import SlackChannel, http_endpoint

__all__ = ["SlackChannel", "http_endpoint", "start_message"]


def start_message(settings: SlackConfig, app_token: str | None, secret: str | None) -> str:
    if settings.mode == "socket" and not app_token:
        return (f"slack: ${settings.bot_token_env} is set but ${settings.app_token_env} is not: Socket Mode needs "
                "the app-level token (xapp-…); Slack prompts wait until a signoff process starts with it set")  # fmt: skip
    if settings.mode == "http" and not secret:
        return (f"slack: HTTP mode needs ${settings.signing_secret_env} (the app's signing secret); "
                f"`signoff serve` refuses what Slack posts to {settings.path} until it restarts with it set")  # fmt: skip
    if settings.mode == "http":
        return (f"slack: tokens are set (HTTP mode: Slack posts to {settings.path} on `signoff serve`); prompts are "
                "sent by whichever signoff process holds the Slack lease")  # fmt: skip
    return f"slack: tokens are set ({settings.mode} mode); Slack runs in whichever signoff process holds its lease"
