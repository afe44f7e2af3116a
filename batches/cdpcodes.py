"""CDP's per-record codes from a batch error log, in plain language, grouped by what to do.

The codes and messages are CDP's (docs/design/cdp-batch-api.md section 1.5, the documented log
codes); a 400 means different things depending on its message, so the group is chosen from
both. Pure: no models, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CodeGroup:
    """What a group of CDP answers means and what to do about it."""

    key: str
    title: str
    explanation: str


IDENTITY = CodeGroup(
    "identity",
    "CDP could not tell who the guest is",
    "The record has no identifier CDP's identity rules accept (or too little identifying "
    "data). Add an identifier of a provider the tenant identifies guests by, mark the record "
    "ready and send it again.",
)
VALIDATION = CodeGroup(
    "validation",
    "A value CDP does not accept",
    "A value has the wrong type, or an extension attribute is not in the tenant's "
    "data-extension schema. Fix the value (or have the attribute added to the schema), mark "
    "the record ready and send it again.",
)
UNREADABLE = CodeGroup(
    "unreadable",
    "CDP could not read the line",
    "The line was not single-line valid JSON. The file, not the record, is at fault: report "
    "it to whoever runs CDP Stage.",
)
MODE = CodeGroup(
    "mode",
    "The mode is not supported",
    "CDP accepts insert, create, upsert, merge, delete and gdpr_delete. The record's mode "
    "must be changed before it is sent again.",
)
NOT_ALLOWED = CodeGroup(
    "not_allowed",
    "CDP did not allow the action",
    "The API token lacks a permission, or a delete met a guest with an active session. Check "
    "the token's permissions in CDP, then send again.",
)
NOT_FOUND = CodeGroup(
    "not_found",
    "CDP found nothing to change",
    "A delete named a guest or order CDP does not have. Nothing to send again.",
)
CONFLICT = CodeGroup(
    "conflict",
    "The identity already exists in CDP",
    "A create (a guest in insert mode) tried to make a guest whose identity CDP already has. "
    "Set the guest's mode to upsert, mark it ready and send it again.",
)
CDP_SIDE = CodeGroup(
    "cdp_side",
    "CDP failed on its side",
    "A server error at CDP, not a problem with the record. Re-sending takes the record as it is.",
)
OTHER = CodeGroup(
    "other",
    "Refused by CDP for another reason",
    "CDP's message says why. Fix the record, mark it ready and send it again.",
)

GROUPS: tuple[CodeGroup, ...] = (
    IDENTITY,
    VALIDATION,
    UNREADABLE,
    MODE,
    NOT_ALLOWED,
    NOT_FOUND,
    CONFLICT,
    CDP_SIDE,
    OTHER,
)
BY_KEY = {group.key: group for group in GROUPS}
_BY_CODE = {"402": MODE, "403": NOT_ALLOWED, "404": NOT_FOUND, "409": CONFLICT}


def code_group(code: str, message: str = "") -> CodeGroup:
    """The group of one log line's code and message."""
    code = (code or "").strip()
    if code.startswith("5"):
        return CDP_SIDE
    if code in _BY_CODE:
        return _BY_CODE[code]
    if code == "400":
        text = (message or "").lower()
        if "identif" in text or "identity" in text:
            return IDENTITY
        if "parse" in text:
            return UNREADABLE
        return VALIDATION
    return OTHER
