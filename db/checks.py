"""Checks on the values callers hand the store, shared by every backend.

Each returns the clean value or raises InvalidInput naming the field in a sentence; none
raises anything else, whatever it is given (a huge int, a lone surrogate, bytes for text,
params nested 100,000 deep), and none touches the database.
"""

from __future__ import annotations

import json
import math

from db.errors import InvalidInput

MAX_SNOWFLAKE = 2**63 - 1
MAX_WORKER_CHARS = 200
MAX_TOKEN_CHARS = 64
MAX_BATCH_KEY_CHARS = 64 * 1024  # a key holds names from params, which are at most 64 KiB
MAX_LEASE_S = 86_400.0
MAX_GPU_SECONDS = 7 * 86_400.0
"""One attempt's GPU seconds: far above any real job, low enough to keep sums finite."""
MAX_LIST_LIMIT = 10_000
MAX_JSON_DEPTH = 32


def describe(value: object) -> str:
    """``repr(value)`` short enough for a message (and safe for ints of any size)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {'negative ' if value < 0 else ''}number of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(name: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in [low, high], else InvalidInput."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(name, f"{name} must be a whole number, got {describe(value)}.")
    if not low <= value <= high:
        raise InvalidInput(name, f"{name} must be between {low} and {high}, got {describe(value)}.")
    return int(value)


def check_id(name: str, value: object) -> int:
    return check_int(name, value, 1, MAX_SNOWFLAKE)


def lookup_id(name: str, value: object) -> int | None:
    """An id to look a row up by: InvalidInput if it is not a whole number, None if no row
    can have it (0, negative, past 2**63 - 1), so that the lookup finds nothing."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(name, f"{name} must be a whole number, got {describe(value)}.")
    return int(value) if 1 <= value <= MAX_SNOWFLAKE else None


def check_seconds(
    name: str, value: object, *, positive: bool = False, most: float = math.inf
) -> float:
    """A finite number in [0, most] (or (0, most] if ``positive``), or InvalidInput."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    try:
        number = float(number)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number) or not (number > 0 if positive else number >= 0) or number > most:
        low = "above 0" if positive else "at least 0"
        raise InvalidInput(
            name, f"{name} must be a finite number {low} and at most {most:g}, got {describe(value)}."
        )
    return number


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(name, f"{name} must be True or False, got {describe(value)}.")
    return value


def check_bytes(name: str, value: object, limit: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidInput(name, f"{name} must be bytes, got {type(value).__name__}.")
    data = bytes(value)
    if not data or len(data) > limit:
        raise InvalidInput(name, f"{name} must be 1 to {limit} bytes, got {len(data)}.")
    return data


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate, which no database or file can store as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_text(name: str, value: object, *, most: int, printable: bool = False) -> str:
    """``value`` if it is a str of at most ``most`` characters that UTF-8 can hold, without
    NUL (and, if ``printable``, without control or format characters), else InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(name, f"{name} must be text, got {type(value).__name__}.")
    if len(value) > most:
        raise InvalidInput(name, f"{name} is {len(value)} characters long; the limit is {most}.")
    if has_surrogate(value):
        raise InvalidInput(
            name, f"{name} contains a lone surrogate, which is not a character; remove it."
        )
    if "\x00" in value:
        raise InvalidInput(name, f"{name} contains a NUL character; remove it.")
    if printable and not value.isprintable():
        raise InvalidInput(name, f"{name} may only hold printable characters, got {describe(value)}.")
    return value


def check_worker(worker: object) -> str:
    """A worker's name: 1 to 200 printable characters (it goes into every log line)."""
    name = check_text("worker", worker, most=MAX_WORKER_CHARS, printable=True)
    if not name.strip():
        raise InvalidInput("worker", f"worker must be a name of 1 to {MAX_WORKER_CHARS} characters.")
    return name


def check_batch_key(key: object) -> str:
    """A batch key as ``jobspec.batch_key`` makes it (any other text simply matches no job)."""
    return check_text("batch_key", key, most=MAX_BATCH_KEY_CHARS)


def check_token(token: object) -> str:
    """A lease token as ``claim`` returned it (any other text simply holds no job)."""
    return check_text("token", token, most=MAX_TOKEN_CHARS)


def check_lease(lease_seconds: object) -> float:
    return check_seconds("lease_seconds", lease_seconds, positive=True, most=MAX_LEASE_S)


def check_gpu_seconds(gpu_seconds: object) -> float:
    return check_seconds("gpu_seconds", gpu_seconds, most=MAX_GPU_SECONDS)


def check_limit(limit: object) -> int:
    """How many rows a listing returns."""
    return check_int("limit", limit, 1, MAX_LIST_LIMIT)


def check_json(name: str, value: object, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> str:
    """``value`` as compact JSON with sorted keys, if it is plain JSON data: dicts with str
    keys, lists, str (no lone surrogates), finite numbers, bools and None, nested at most
    ``max_depth`` deep and at most ``max_bytes`` long. Walks without recursion, and stops
    as soon as the data is too deep or too big."""
    budget = max_bytes
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise InvalidInput(name, f"{name} nests deeper than {max_depth} levels.")
        budget -= 1
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                raise InvalidInput(name, f"{name} must be JSON objects with text keys.")
            stack.extend((child, depth + 1) for child in item.values())
            stack.extend((key, depth + 1) for key in item)
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            budget -= len(item)
            if has_surrogate(item):
                raise InvalidInput(name, f"{name} holds text with a lone surrogate; remove it.")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(name, f"{name} must hold finite numbers, got {item!r}.")
        elif isinstance(item, int):  # bools too
            if not isinstance(item, bool) and abs(item) > MAX_SNOWFLAKE:
                raise InvalidInput(name, f"{name} holds a number beyond ±2**63, {describe(item)}.")
        elif item is not None:
            raise InvalidInput(
                name, f"{name} must be plain JSON values, not {type(item).__name__}."
            )
        if budget < 0:
            raise InvalidInput(name, f"{name} take more than {max_bytes} bytes as JSON.")
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > max_bytes:
        raise InvalidInput(name, f"{name} take more than {max_bytes} bytes as JSON.")
    return text
