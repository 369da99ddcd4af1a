"""Errors the bot shows to users: the message is one or two sentences, ready to send."""

from __future__ import annotations


class UserError(Exception):
    """Something the user asked for can't be done; ``str(error)`` says why and what to do."""


class AttachmentError(UserError):
    """An uploaded picture was refused."""


class OptionError(UserError):
    """A command option is out of range or not allowed in this server."""

