"""Erasure: deletion requests to CDP, the suppression list, and what it stops.

A deletion request (GuestDeletion) is a staged record of schema guest in mode `delete` or
`gdpr_delete` whose value is just the identifiers (cdp-batch-api.md section 3.1.5). It goes
into a batch of its own kind, is approved by a second person and sent like any batch. Its
outcome decides what happens next (deletions_apply_outcomes, called by the batches app):

- CDP deleted a guest and says several matched ("2 matches found for this guest, 1st match
  deleted"), or accepted the record without a message (a file that succeeded has no log, so
  CDP did not say how many matched): the request is sent again (it becomes eligible for the
  next deletion batch), because CDP deletes one match per record — "repeat the delete until
  the log says no guest was found";
- CDP says it deleted the only match ("Guest and associated entities deleted"), or found none
  (404 guest not found): done. The request's
  identifiers are cleared and every staged guest with one of them is purged like retention
  does (refs and hashes kept);
- anything else (not enough identifying info, an active session): the request stays open with
  CDP's message, to be fixed or sent again.

Suppression starts with the request, not with CDP's answer: from then on the person's data is
not sent again. The suppression list holds only sha256("provider:id") of each identifier,
computed the same way in Python and in SQL (SUPPRESSED_GUEST_SQL / SUPPRESSED_TRACKING_SQL), so
a staged, re-imported or edited guest, or a tracking event, that carries a suppressed identity
is *invalid* with the code `suppressed` and can never be marked ready; the build checks the
list again before it takes a record. The hash is a pseudonym, not anonymity: whoever can read
the table and guesses an address can confirm it, so the table is as protected as the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from cdpstage.errors import ApplicationError
from records.models import (
    DeliveryStatus,
    ErasureStatus,
    Guest,
    GuestDeletion,
    GuestMigration,
    Identifier,
    Order,
    ReviewStatus,
    SuppressedIdentity,
    TrackingEvent,
)
from records.rules import normalize_email
from records.selectors import identity_provider_names, live_batches
from records.serializing import dump_value, value_hash
from records.services.retention import purge_records

__all__ = [
    "SUPPRESSED_CODE",
    "SUPPRESSED_SQL",
    "DeletionOutcome",
    "deletions_apply_outcomes",
    "guest_deletion_request",
    "identity_hash",
    "parse_identifier",
    "suppression_mark_invalid",
]

SUPPRESSED_CODE = "suppressed"
SUPPRESSED_PROBLEM = {
    "field": "identifiers",
    "code": SUPPRESSED_CODE,
    "message": (
        "This person asked to be erased: an identifier of this record is on the suppression "
        "list, so it can never be sent to CDP again."
    ),
}
MODES = ("delete", "gdpr_delete")
# CDP's per-record messages (cdp-batch-api.md section 3.1.5 / S-GDEL).
ONLY_MATCH_DELETED = "Guest and associated entities deleted"
GUEST_NOT_FOUND_CODE = "404"


# "Carries a suppressed identity", for a guest / tracking event row aliased `t`. A guest's
# identifiers carry their hash (Identifier.identity_hash, indexed): a join on it, not a hash
# of every identifier per check. A tracking event's identifiers are JSON: hashed by
# records_identity_hash(), the SQL twin of identity_hash() (migration 0018).
SUPPRESSED_GUEST_SQL = (
    "EXISTS (SELECT 1 FROM records_identifier si JOIN records_suppressedidentity ss"
    " ON ss.identity_hash = si.identity_hash WHERE si.guest_id = t.id)"
)
SUPPRESSED_TRACKING_SQL = (
    "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.identifiers) = 'array'"
    " THEN t.identifiers ELSE '[]'::jsonb END) e JOIN records_suppressedidentity ss"
    " ON ss.identity_hash = records_identity_hash(e->>'provider', e->>'id'))"
)
# An order belongs to the guest its contact's identifiers name (cdp-batch-api.md 3.2).
SUPPRESSED_ORDER_SQL = (
    "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.contact->'identifiers')"
    " = 'array' THEN t.contact->'identifiers' ELSE '[]'::jsonb END) e"
    " JOIN records_suppressedidentity ss"
    " ON ss.identity_hash = records_identity_hash(e->>'provider', e->>'id'))"
)

# A migration names two guests: an erased person on either side stops it (moving data to or
# from them would put their data back at CDP, or act on a profile that must be gone).
SUPPRESSED_MIGRATION_SQL = (
    "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.migrate_from) = 'array'"
    " THEN t.migrate_from ELSE '[]'::jsonb END || CASE WHEN jsonb_typeof(t.migrate_to) = 'array'"
    " THEN t.migrate_to ELSE '[]'::jsonb END) e JOIN records_suppressedidentity ss"
    " ON ss.identity_hash = records_identity_hash(e->>'provider', e->>'id'))"
)


def identity_hash(provider: str, identifier: str) -> str:
    """sha256 of "provider:id" after the rules' normalisation (email ids are lower-cased)."""
    return hashlib.sha256(f"{provider}:{identifier}".encode()).hexdigest()


def _normalised(provider: str, identifier: str) -> str:
    # The same normalisation the identifier rule applies when a guest is staged.
    return normalize_email(identifier) if provider.lower() == "email" else identifier.strip()


def parse_identifier(text: str) -> tuple[str, str]:
    """ "provider:id" as typed on a command line, checked against the known providers."""
    provider, sep, identifier = text.partition(":")
    provider, identifier = provider.strip(), identifier.strip()
    if not sep or not provider or not identifier:
        raise ApplicationError(
            "Give each identifier as provider:id, for example email:anna@example.com."
        )
    known = identity_provider_names()
    if provider not in known:
        raise ApplicationError(
            f"{provider!r} is not a known identity provider ({', '.join(known)}); add it with "
            f"`manage.py identity_providers add {provider}` first."[:300]
        )
    return provider, _normalised(provider, identifier)


@transaction.atomic
def guest_deletion_request(
    *, identifiers: Iterable[tuple[str, str]], gdpr: bool, user: Any
) -> GuestDeletion:
    """Stage a deletion request, ready for a deletion batch (its approval is the batch's)."""
    if not user.has_perm("records.add_guestdeletion"):
        raise ApplicationError("You do not have permission to request deletions.")
    pairs = list(dict.fromkeys(identifiers))
    if not pairs:
        raise ApplicationError("A deletion request needs at least one identifier.")
    known = set(identity_provider_names())
    for provider, _ in pairs:
        if provider not in known:
            raise ApplicationError(f"{provider!r} is not a known identity provider.")
    pairs = [(provider, _normalised(provider, identifier)) for provider, identifier in pairs]
    hashes = [identity_hash(provider, identifier) for provider, identifier in pairs]
    guest_ids = _guests_with(pairs)
    in_batch = next(iter(live_batches(model=Guest, record_ids=guest_ids).values()), None)
    if in_batch is not None:
        # Sent after the delete, that batch would create the profile again at CDP.
        raise ApplicationError(
            f"A guest with this identity is in batch {in_batch}, which has not finished; "
            "cancel it or let it end, then ask for the deletion again."
        )
    open_request = (
        GuestDeletion.objects.exclude(erasure_status=ErasureStatus.DONE)
        .filter(identity_hashes__overlap=hashes)
        .values_list("pk", flat=True)
        .first()
    )
    if open_request is not None:
        raise ApplicationError(
            f"Deletion request {open_request} for this identity is still open; follow it "
            "instead of asking twice."
        )
    value = {"identifiers": [{"provider": p, "id": i} for p, i in pairs]}
    text = dump_value(value)
    deletion = GuestDeletion.objects.create(
        mode="gdpr_delete" if gdpr else "delete",
        identifiers=value["identifiers"],
        identity_hashes=hashes,
        cdp_value=text,
        value_hash=value_hash(text),
        review_status=ReviewStatus.READY,
        requested_by=user,
    )
    SuppressedIdentity.objects.bulk_create(
        [SuppressedIdentity(identity_hash=h, deletion=deletion) for h in hashes],
        ignore_conflicts=True,
    )
    # The build's suppression check joins this list to the identifiers; its plan follows the
    # list's size, so the planner learns it now rather than at autovacuum's pleasure.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE records_suppressedidentity")
    suppression_mark_invalid(Guest, ids=guest_ids)
    suppression_mark_invalid(TrackingEvent, all_records=True)
    suppression_mark_invalid(Order, all_records=True)
    suppression_mark_invalid(GuestMigration, all_records=True)
    return deletion


def _guests_with(pairs: Iterable[tuple[str, str]]) -> list[int]:
    ids: set[int] = set()
    for provider, identifier in pairs:
        ids.update(
            Identifier.objects.filter(provider=provider, identifier=identifier).values_list(
                "guest_id", flat=True
            )
        )
    return sorted(ids)


@dataclass
class DeletionOutcome:
    again: int = 0
    done: int = 0
    open: int = 0
    guests_purged: int = 0


def deletions_apply_outcomes(*, outcomes: Iterable[tuple[int, str, str, str]]) -> DeletionOutcome:
    """Act on CDP's outcome for deletion requests: (request id, outcome, code, message) each.

    Called by the batches app once a file's outcomes are written, in its transaction.
    """
    result = DeletionOutcome()
    now = timezone.now()
    for deletion_id, outcome, code, message in outcomes:
        deletion = GuestDeletion.objects.select_for_update().get(pk=deletion_id)
        fields: dict[str, Any] = {"rounds": deletion.rounds + 1, "erasure_message": message[:300]}
        finished = (outcome == "delivered" and message == ONLY_MATCH_DELETED) or (
            outcome == "rejected" and code == GUEST_NOT_FOUND_CODE
        )
        if outcome == "delivered" and not finished:
            # Not done: send the same value again (eligible again once its delivered hash is
            # cleared), until CDP reports the last match or none.
            fields.update(
                erasure_status=ErasureStatus.AGAIN,
                delivered_hash="",
                delivery_status=DeliveryStatus.NOT_SENT,
            )
            result.again += 1
        elif finished:
            result.guests_purged += _purge_guests_of(deletion)
            fields.update(
                erasure_status=ErasureStatus.DONE,
                completed_at=now,
                identifiers=[],
                cdp_value="",
                purged_at=now,
            )
            result.done += 1
        else:
            result.open += 1
        GuestDeletion.objects.filter(pk=deletion_id).update(updated_at=now, **fields)
    return result


def _purge_guests_of(deletion: GuestDeletion) -> int:
    """Purge the staged guests carrying the request's identifiers (CDP no longer has them)."""
    pairs = [(item["provider"], item["id"]) for item in deletion.identifiers]
    return purge_records(Guest, Guest.objects.filter(pk__in=_guests_with(pairs)))


# Per model: the test "carries a suppressed identity" on its alias `t`.
SUPPRESSED_SQL = {
    Guest: SUPPRESSED_GUEST_SQL,
    TrackingEvent: SUPPRESSED_TRACKING_SQL,
    Order: SUPPRESSED_ORDER_SQL,
    GuestMigration: SUPPRESSED_MIGRATION_SQL,
}


def suppression_mark_invalid(
    model: type[Guest] | type[TrackingEvent] | type[Order] | type[GuestMigration],
    *,
    ids: Iterable[int] | None = None,
    import_run_id: int | None = None,
    all_records: bool = False,
) -> int:
    """Make invalid (code `suppressed`) the records that carry a suppressed identity.

    Among the given records (after an admin edit re-validated them), the records of an import
    run, or every record not yet sent (a new request). Returns how many were not invalid
    before. Cheap when the list is empty.
    """
    if not SuppressedIdentity.objects.exists():
        return 0
    table, suppressed = model._meta.db_table, SUPPRESSED_SQL[model]
    params: dict[str, Any] = {
        "code": dump_value([{"code": SUPPRESSED_CODE}]),
        "problem": dump_value([SUPPRESSED_PROBLEM]),
        "invalid": ReviewStatus.INVALID,
    }
    if ids is not None:
        params["ids"] = list(ids)
        if not params["ids"]:
            return 0
        where = "t.id = ANY(%(ids)s)"
    elif import_run_id is not None:
        where, params["run"] = "t.import_run_id = %(run)s", import_run_id
    elif all_records:
        # Delivered ones are CDP's now: the deletion takes care of them.
        where, params["delivered"] = "t.delivery_status <> %(delivered)s", DeliveryStatus.DELIVERED
    else:
        raise ValueError("Name the records, the import run, or all records.")
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH marked AS ("
            f" UPDATE {table} t SET review_status = %(invalid)s, updated_at = now(),"
            " validation_errors = t.validation_errors || %(problem)s::jsonb"
            f" FROM {table} old WHERE old.id = t.id AND {where} AND {suppressed}"
            " AND NOT t.validation_errors @> %(code)s::jsonb"
            " RETURNING old.review_status)"
            " SELECT count(*) FILTER (WHERE review_status <> %(invalid)s) FROM marked",
            params,
        )
        return cursor.fetchone()[0]
