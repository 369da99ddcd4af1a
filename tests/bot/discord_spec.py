"""Validate the REST requests the bot made against Discord's OpenAPI description.

The spec is ``../shared/discord-api-spec/openapi.json`` beside the repository
(or ``$VQBOT_DISCORD_SPEC``). A missing spec fails loudly: these checks are
part of the suite, not optional extras.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:discord-openapi"
REPO = Path(__file__).resolve().parents[2]


def spec_path() -> Path:
    override = os.environ.get("VQBOT_DISCORD_SPEC")
    path = Path(override) if override else REPO / ".." / "shared" / "discord-api-spec" / "openapi.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"Discord's OpenAPI spec is missing at {path}; put shared/discord-api-spec beside the "
            "repository or set VQBOT_DISCORD_SPEC to the openapi.json file."
        )
    return path


@lru_cache(maxsize=1)
def _spec() -> tuple[Registry, list[tuple[int, re.Pattern[str], str, dict[str, Any]]]]:
    spec = json.loads(spec_path().read_text())
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))
    routes = []
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        literals = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
        routes.append((literals, re.compile(pattern), template, item))
    routes.sort(key=lambda r: -r[0])  # the most literal template wins: .../@original over .../{message_id}
    return registry, routes


def find_operation(method: str, path: str) -> tuple[str | None, dict[str, Any] | None]:
    for _, rx, template, item in _spec()[1]:
        if rx.match(path) and method.lower() in item:
            return template, item[method.lower()]
    return None, None


@cache
def _validator(method: str, template: str) -> Draft202012Validator:
    def esc(s: str) -> str:
        return s.replace("~", "~0").replace("/", "~1")

    pointer = "/".join(["#/paths", esc(template), method, "requestBody/content", esc("application/json"), "schema"])
    return Draft202012Validator({"$ref": SPEC_URI + pointer}, registry=_spec()[0])


def normalise(body: Any) -> Any:
    """discord.py sends some snowflakes as JSON integers (new-upload placeholder ids, the DM
    ``recipient_id``, the ids in ``allowed_mentions`` and ``message_reference``), which Discord
    accepts but the spec's string snowflake does not; stringify exactly those before validating."""
    if isinstance(body, dict) and isinstance(body.get("recipient_id"), int):
        body = {**body, "recipient_id": str(body["recipient_id"])}
    reference = body.get("message_reference") if isinstance(body, dict) else None
    if isinstance(reference, dict):
        body = {**body, "message_reference": {
            k: str(v) if k.endswith("_id") and isinstance(v, int) else v for k, v in reference.items()}}
    mentions = body.get("allowed_mentions") if isinstance(body, dict) else None
    if isinstance(mentions, dict):
        body = {**body, "allowed_mentions": {
            k: [str(i) if isinstance(i, int) else i for i in v] if k in ("users", "roles") and isinstance(v, list)
            else v for k, v in mentions.items()}}
    if isinstance(body, dict) and isinstance(body.get("attachments"), list):
        body = {**body, "attachments": [
            {**a, "id": str(a["id"])} if isinstance(a, dict) and isinstance(a.get("id"), int) else a
            for a in body["attachments"]
        ]}
    return body


def request_problems(method: str, path: str, body: Any) -> list[str]:
    """Why this request does not match the spec (empty when it does)."""
    template, op = find_operation(method, path)
    if template is None or op is None:
        return [f"{method} {path}: no such operation in the spec"]
    if body is None:
        return []
    if "requestBody" not in op:
        return [f"{method} {template}: sends a body but the operation takes none"]
    return [
        f"{method} {template}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in _validator(method.lower(), template).iter_errors(normalise(body))
    ]


def all_problems(entries: list[Any]) -> list[str]:
    return [p for e in entries for p in request_problems(e.method, e.path, e.json)]
