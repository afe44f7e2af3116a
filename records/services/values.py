"""Recompute staged records' stored values: the one definition used after child rows are
imported and after an admin edit (records.services.review calls them; re-exported by
records.services.imports)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import connection, transaction

from cdpstage.errors import ApplicationError
from records.models import Guest, GuestMode, Order, ReviewStatus, TrackingEvent
from records.rules import (
    Problem,
    clean_guest,
    clean_order,
    clean_tracking,
    guest_at_cdp,
    identifier_in_use,
    identity_key,
    insert_at_cdp_problem,
    order_key,
    order_redelivery_problems,
)
from records.selectors import identity_provider_names, live_batches, live_batches_settle
from records.serializing import (
    dump_value,
    guest_value_from_instance,
    order_value_from_instance,
    problems_as_json,
    tracking_value_from_instance,
    value_hash,
)
from records.services.erasure import suppression_mark_invalid

__all__ = ["guests_refresh_values", "orders_refresh_values", "tracking_refresh_values"]


REFRESH_CHUNK = 1000


def _chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _next_status(current: str, *, changed: bool, invalid: bool) -> str:
    """Review status after a recompute: a changed value goes back to review; `invalid` follows
    the problems; an unchanged valid record keeps what the reviewer decided."""
    if invalid:
        return ReviewStatus.INVALID
    if changed or current == ReviewStatus.INVALID:
        return ReviewStatus.NEW
    return current


@transaction.atomic
def guests_refresh_values(*, guest_ids: Iterable[int]) -> int:
    """Recompute the canonical value, hash, identity key, problems and status of these guests.

    The one definition used after child rows are imported and after an admin edit: the value
    is rebuilt from the typed columns and children (guest_value_from_instance), cleaned by the
    rules, and stored when anything differs. Returns how many guests changed. Raises
    ApplicationError for a guest locked in a live batch whose value would change, or whose new
    identity belongs to another staged guest.
    """
    providers = identity_provider_names()
    ids = sorted(set(guest_ids))
    changed = 0
    live_batches_settle(model=Guest)
    for chunk in _chunks(ids, REFRESH_CHUNK):
        held = live_batches(model=Guest, record_ids=chunk)
        guests = Guest.objects.filter(pk__in=chunk).prefetch_related(
            "identifiers", "subscriptions", "extensions"
        )
        cleaned = [
            (guest, *clean_guest(guest_value_from_instance(guest), identity_providers=providers))
            for guest in guests
        ]
        shared = _identifiers_of_other_guests(cleaned, providers)
        rows: list[tuple[Any, ...]] = []
        for guest, value, problems in cleaned:
            problems.extend(shared.get(guest.pk, ()))
            if guest.mode == GuestMode.INSERT and guest_at_cdp(
                delivered_hash=guest.delivered_hash, delivery_status=guest.delivery_status
            ):
                problems.append(insert_at_cdp_problem())
            text = dump_value(value)
            digest = value_hash(text)
            errors = problems_as_json(problems)
            key = identity_key(value.get("identifiers", ()), identity_providers=providers)
            value_changed = digest != guest.value_hash
            status = _next_status(guest.review_status, changed=value_changed, invalid=bool(errors))
            if (
                not value_changed
                and errors == guest.validation_errors
                and key == guest.identity_key
                and status == guest.review_status
            ):
                continue
            if value_changed and guest.pk in held:
                raise ApplicationError(
                    f"Guest {guest.pk} is in batch {held[guest.pk]}, which has not "
                    "finished; change it after the batch ends."
                )
            rows.append((guest.pk, text, digest, dump_value(errors), key, status))
        if not rows:
            continue
        _check_identity_free(rows)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE records_guest AS g
                   SET cdp_value = v.cdp_value, value_hash = v.value_hash,
                       validation_errors = v.errors::jsonb, identity_key = v.identity_key,
                       review_status = v.review_status, updated_at = now()
                  FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],
                              %s::text[])
                       AS v(id, cdp_value, value_hash, errors, identity_key, review_status)
                 WHERE g.id = v.id
                """,
                [list(column) for column in zip(*rows, strict=True)],
            )
        # The rules know nothing of erasure requests: re-apply the suppression list.
        suppression_mark_invalid(Guest, ids=[row[0] for row in rows])
        changed += len(rows)
    return changed


def _identifiers_of_other_guests(
    cleaned: list[tuple[Guest, dict[str, Any], list[Problem]]], providers: Sequence[str]
) -> dict[int, list[Problem]]:
    """Guest id -> a problem for each of its known-provider identifiers that another staged
    guest has (the import checks its rows by the same rule: identifier_in_use)."""
    known = set(providers)
    ids, positions, names, values = [], [], [], []
    for guest, value, _problems in cleaned:
        for position, item in enumerate(value.get("identifiers", ())):
            if item.get("provider") in known and item.get("id"):
                ids.append(guest.pk)
                positions.append(position)
                names.append(item["provider"])
                values.append(item["id"])
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT w.guest_id, w.position, g.ref::text
                 FROM unnest(%s::bigint[], %s::integer[], %s::text[], %s::text[])
                      AS w(guest_id, position, provider, identifier)
                 JOIN records_identifier i
                   ON i.provider = w.provider AND i.identifier = w.identifier
                  AND i.guest_id <> w.guest_id
                 JOIN records_guest g ON g.id = i.guest_id""",
            [ids, positions, names, values],
        )
        found: dict[int, list[Problem]] = {}
        for guest_id, position, ref in cursor.fetchall():
            problem = identifier_in_use(f"identifiers.{position}.id", f"staged guest {ref}")
            found.setdefault(guest_id, []).append(problem)
    return found


def _check_identity_free(rows: list[tuple[Any, ...]]) -> None:
    keys = {row[4]: row[0] for row in rows if row[4]}
    if not keys:
        return
    taken = Guest.objects.filter(identity_key__in=list(keys)).values_list("pk", "identity_key")
    for pk, key in taken:
        if keys[key] != pk:
            raise ApplicationError(
                f"Another staged guest (id {pk}) already has this identity; a guest's "
                "highest-priority identifier must be unique among staged guests."
            )


@transaction.atomic
def tracking_refresh_values(*, event_ids: Iterable[int]) -> int:
    """Recompute the canonical value, hash, guest identity, problems and status of these events.

    Same contract as guests_refresh_values, for tracking events (which have no children).
    """
    providers = identity_provider_names()
    ids = sorted(set(event_ids))
    changed = 0
    live_batches_settle(model=TrackingEvent)
    for chunk in _chunks(ids, REFRESH_CHUNK):
        held = live_batches(model=TrackingEvent, record_ids=chunk)
        rows: list[tuple[Any, ...]] = []
        for event in TrackingEvent.objects.filter(pk__in=chunk):
            value, problems = clean_tracking(
                tracking_value_from_instance(event), identity_providers=providers
            )
            text = dump_value(value)
            digest = value_hash(text)
            errors = problems_as_json(problems)
            key = identity_key(value.get("identifiers", ()), identity_providers=providers) or ""
            value_changed = digest != event.value_hash
            status = _next_status(event.review_status, changed=value_changed, invalid=bool(errors))
            if (
                not value_changed
                and errors == event.validation_errors
                and key == event.guest_identity_key
                and status == event.review_status
            ):
                continue
            if value_changed and event.pk in held:
                raise ApplicationError(
                    f"Tracking event {event.pk} is in batch {held[event.pk]}, which "
                    "has not finished; change it after the batch ends."
                )
            rows.append((event.pk, text, digest, dump_value(errors), key, status))
        if not rows:
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE records_trackingevent AS t
                   SET cdp_value = v.cdp_value, value_hash = v.value_hash,
                       validation_errors = v.errors::jsonb,
                       guest_identity_key = v.identity_key,
                       review_status = v.review_status, updated_at = now()
                  FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],
                              %s::text[])
                       AS v(id, cdp_value, value_hash, errors, identity_key, review_status)
                 WHERE t.id = v.id
                """,
                [list(column) for column in zip(*rows, strict=True)],
            )
        # The rules know nothing of erasure requests: re-apply the suppression list.
        suppression_mark_invalid(TrackingEvent, ids=[row[0] for row in rows])
        changed += len(rows)
    return changed


@transaction.atomic
def orders_refresh_values(*, order_ids: Iterable[int]) -> int:
    """Recompute the canonical value, hash, order key, contact identity, problems and status of
    these orders, from their columns and items (the admin edit's path; the import computes the
    same through the same rules). Same contract as guests_refresh_values; also refuses an edit
    that gives an order the reference id and ordered-at time of another staged order.
    """
    providers = identity_provider_names()
    ids = sorted(set(order_ids))
    changed = 0
    live_batches_settle(model=Order)
    for chunk in _chunks(ids, REFRESH_CHUNK):
        held = live_batches(model=Order, record_ids=chunk)
        rows: list[tuple[Any, ...]] = []
        for order in Order.objects.filter(pk__in=chunk).prefetch_related("items"):
            value, problems = clean_order(
                order_value_from_instance(order), identity_providers=providers
            )
            text = dump_value(value)
            digest = value_hash(text)
            problems += order_redelivery_problems(
                value_hash=digest, delivered_hash=order.delivered_hash
            )
            errors = problems_as_json(problems)
            key = order_key(value)
            contact = value.get("contact", {})
            contact_key = (
                identity_key(contact.get("identifiers", ()), identity_providers=providers) or ""
            )
            value_changed = digest != order.value_hash
            status = _next_status(order.review_status, changed=value_changed, invalid=bool(errors))
            if (
                not value_changed
                and errors == order.validation_errors
                and key == order.order_key
                and contact_key == order.contact_identity_key
                and status == order.review_status
            ):
                continue
            if value_changed and order.pk in held:
                raise ApplicationError(
                    f"Order {order.pk} is in batch {held[order.pk]}, which has not finished; "
                    "change it after the batch ends."
                )
            rows.append((order.pk, text, digest, dump_value(errors), key, contact_key, status))
        if not rows:
            continue
        _check_order_key_free(rows)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE records_order AS o
                   SET cdp_value = v.cdp_value, value_hash = v.value_hash,
                       validation_errors = v.errors::jsonb, order_key = v.order_key,
                       contact_identity_key = v.contact_key,
                       review_status = v.review_status, updated_at = now()
                  FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],
                              %s::text[], %s::text[])
                       AS v(id, cdp_value, value_hash, errors, order_key, contact_key,
                            review_status)
                 WHERE o.id = v.id
                """,
                [list(column) for column in zip(*rows, strict=True)],
            )
        # The rules know nothing of erasure requests: re-apply the suppression list.
        suppression_mark_invalid(Order, ids=[row[0] for row in rows])
        changed += len(rows)
    return changed


def _check_order_key_free(rows: list[tuple[Any, ...]]) -> None:
    keys = {row[4]: row[0] for row in rows if row[4]}
    if not keys:
        return
    taken = Order.objects.filter(order_key__in=list(keys)).values_list("pk", "order_key")
    for pk, key in taken:
        if keys[key] != pk:
            raise ApplicationError(
                f"Another staged order (id {pk}) has this reference id and ordered-at time: "
                "CDP identifies an order by the two, so they must be unique among staged orders."
            )
