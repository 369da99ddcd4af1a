"""Is the Discord token good, and can Discord be reached? Asked first, before anything slow.

``vqbot run`` and ``vqbot sync`` call ``check_discord`` before they download or load a model;
``vqbot doctor`` calls it to say which application the token belongs to and which servers it
is in. Every failure is a ``DiscordUnreachable`` whose message is one sentence that says what to
fix: no aiohttp traceback. ``explain`` turns the same kinds of error, raised later by discord.py
itself (a login after the check, a sync), into the same sentences.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from vqbot_cli.errors import UsageError

API_BASE = "https://discord.com/api/v10"  # discord.py's own (discord.http.Route.BASE); tests point it elsewhere
TIMEOUT_S = 10.0
MAX_BODY = 1 << 20
PORTAL = "the Developer Portal (https://discord.com/developers/applications)"
BAD_TOKEN = (f"Discord refused the token in DISCORD_TOKEN (401 Unauthorized); copy a new one from {PORTAL}, "
             "Bot -> Reset Token, into .env.")


class DiscordUnreachable(UsageError):
    """Discord could not be asked, or refused: ``str(error)`` says what to do. ``kind`` names the case
    (``dns``, ``connect``, ``timeout``, ``tls``, ``token``, ``rate_limited``, ``server``, ``refused``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class DiscordIdentity:
    """Who the token is: the bot user, its application and (when asked) the servers it is in."""

    bot_id: int
    bot_name: str
    application_id: int | None
    application_name: str | None
    guilds: tuple[str, ...] | None = None  # names, at most the first 200; None when not asked


def check_token_shape(token: str) -> None:
    """Refuse what can't be a bot token before sending it anywhere (it goes into a header)."""
    if token.lower().startswith("bot "):
        raise DiscordUnreachable("token", "DISCORD_TOKEN starts with “Bot ”; put only the token itself in .env.")
    if not token.isascii() or not token.isprintable() or " " in token or token.count(".") != 2:
        raise DiscordUnreachable(
            "token", f"DISCORD_TOKEN doesn't look like a bot token (three parts separated by dots); copy it from "
                     f"{PORTAL}, Bot -> Reset Token (not the client secret or the public key).")


def _host(base: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(base).hostname or base


def explain(exc: BaseException, *, base: str = API_BASE, timeout_s: float = TIMEOUT_S) -> DiscordUnreachable | None:
    """The sentence for a network or HTTP failure talking to Discord, or None if ``exc`` is not one."""
    import aiohttp
    import discord

    host = _host(base)
    if isinstance(exc, DiscordUnreachable):
        return exc
    if isinstance(exc, discord.LoginFailure):
        return DiscordUnreachable("token", BAD_TOKEN)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return DiscordUnreachable("dns", f"Can't find {host} (the name does not resolve); check this machine's "
                                         "network and DNS settings, then start again.")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return DiscordUnreachable("tls", f"The TLS connection to {host} failed ({type(exc).__name__}); check the "
                                         "system clock, and whether a proxy intercepts HTTPS here.")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError | ConnectionError):
        return DiscordUnreachable("connect", f"Can't connect to {host} ({_reason(exc)}); check this machine's "
                                             "network, firewall or proxy, then start again.")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return DiscordUnreachable("timeout", f"{host} did not answer within {timeout_s:g} s; check this machine's "
                                             "network, then start again.")
    if isinstance(exc, discord.HTTPException):
        return _status_problem(exc.status, host, None, "")
    if isinstance(exc, aiohttp.ClientError):
        return DiscordUnreachable("connect", f"Talking to {host} failed ({_reason(exc)}); check the network, "
                                             "then start again.")
    return None


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "os_error", None)
    text = getattr(inner, "strerror", None) or str(inner or exc).strip() or type(exc).__name__
    return " ".join(text.split())[:120]


def _status_problem(status: int, host: str, retry_after: float | None, body: str) -> DiscordUnreachable:
    if status == 401:
        return DiscordUnreachable("token", BAD_TOKEN)
    if status == 429:
        wait = f" for {retry_after:.0f} s" if retry_after is not None else ""
        blocked = " (this address is blocked for too many invalid requests: a restart loop with a bad token?)" \
            if "cloudflare" in body.lower() or "banned" in body.lower() else ""
        return DiscordUnreachable("rate_limited", f"Discord is rate-limiting this bot{wait}{blocked}; wait, then "
                                                  "start again (don't restart in a loop).")
    if status >= 500:
        return DiscordUnreachable("server", f"Discord answered {status} (its own trouble, not this setup); see "
                                            "https://discordstatus.com and start again later.")
    return DiscordUnreachable("refused", f"Discord answered {status} to the bot's login from {host}; check "
                                         "DISCORD_TOKEN, then start again.")


async def _get(session: Any, base: str, path: str) -> Any:
    async with session.get(f"{base}{path}") as response:
        body = (await response.content.read(MAX_BODY)).decode("utf-8", "replace")
        if response.status != 200:
            retry = response.headers.get("Retry-After")
            try:
                retry_after: float | None = float(json.loads(body).get("retry_after"))
            except (ValueError, TypeError, AttributeError):
                try:
                    retry_after = float(retry) if retry else None
                except ValueError:
                    retry_after = None
            raise _status_problem(response.status, _host(base), retry_after, body)
        try:
            return json.loads(body)
        except ValueError:
            raise DiscordUnreachable("server", f"{_host(base)} answered with something that is not Discord's "
                                               "JSON; is a proxy or captive portal in the way?") from None


async def check_discord(token: str, *, base: str | None = None, timeout_s: float = TIMEOUT_S,
                        guilds: bool = False) -> DiscordIdentity:
    """Log in over REST (GET /users/@me, then the application and, with ``guilds``, the servers);
    DiscordUnreachable with one sentence when that fails. Nothing waits longer than ``timeout_s``."""
    import aiohttp

    base = (base or API_BASE).rstrip("/")
    check_token_shape(token)
    headers = {"Authorization": f"Bot {token}", "User-Agent": "DiscordBot (https://github.com/vqbot, 1) vqbot"}
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            me = await _get(session, base, "/users/@me")
            app = await _get(session, base, "/oauth2/applications/@me")
            names = None
            if guilds:
                listed = await _get(session, base, "/users/@me/guilds?limit=200")
                names = tuple(str(g.get("name", "?")) for g in listed if isinstance(g, dict))
    except Exception as exc:  # every failure becomes a sentence, or goes on as it was
        problem = explain(exc, base=base, timeout_s=timeout_s)
        if problem is None:
            raise
        raise problem from None
    if not isinstance(me, dict) or not isinstance(app, dict):
        raise DiscordUnreachable("server", f"{_host(base)} answered with something that is not Discord's JSON.")
    return DiscordIdentity(bot_id=int(me.get("id") or 0), bot_name=str(me.get("username", "?")),
                           application_id=int(app["id"]) if str(app.get("id", "")).isdigit() else None,
                           application_name=str(app["name"]) if "name" in app else None, guilds=names)
