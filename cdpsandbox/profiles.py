"""What CDP would now hold: guest profiles keyed by identifier, their orders, tracking events.

Every method runs under one lock and is called by the processor after a record passed
validation. Outcomes that depend on what is stored (409 on create, 404 on delete) come from here.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cdpsandbox.store import iso_ms
from cdpsandbox.validation import Rejected

Key = tuple[str, str]

GUEST_DELETED = "Guest and associated entities deleted"  # S-GDEL
GUEST_NOT_FOUND = "Guest not found"  # S-GDEL
ORDER_DELETED = "Order and associated entities deleted"  # S-ODEL
ORDER_NOT_FOUND = "No order found for the provided referenceId and orderedAt attributes"  # S-ODEL
ORDER_AMBIGUOUS = (
    "More than one order exists with that referenceId, please supply the orderedAt date for the "
    "order you wish to delete"
)  # S-ODEL
SPECIAL_GUEST_KEYS = ("identifiers", "extensions", "subscriptions")


@dataclass
class Profile:
    """One merged guest."""

    id: str
    created_at: float
    modified_at: float
    identifiers: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    # How each record applied to it: {"ref", "batch", "applied"}, "applied" one of upsert,
    # create, order, migrated_from (its entities moved away), migrated_to (they moved here).
    history: list[dict[str, str]] = field(default_factory=list)

    def touched_by(self, record_ref: str, batch_ref: str, applied: str = "upsert") -> None:
        """Remember which record (and batch) changed this profile, and how."""
        self.history.append({"ref": record_ref, "batch": batch_ref, "applied": applied})
        self.refs.append(record_ref)
        if batch_ref not in self.batches:
            self.batches.append(batch_ref)
        self.modified_at = time.time()


class ProfileStore:
    """Profiles indexed by (provider, id) of the configured identity rules; orders; events."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clear()

    def clear(self) -> None:
        """Forget everything."""
        with self.lock:
            self._seq = 0
            self._profiles: dict[str, Profile] = {}
            self._index: dict[Key, str] = {}
            self._orders: dict[tuple[str, str], dict[str, Any]] = {}
            self._events: list[dict[str, Any]] = []
            self._migrations: list[dict[str, Any]] = []

    # --- guests ------------------------------------------------------------------------

    def _matches(self, keys: list[Key]) -> list[Profile]:
        found: list[Profile] = []
        for key in keys:
            profile_id = self._index.get(key)
            if profile_id is not None and self._profiles[profile_id] not in found:
                found.append(self._profiles[profile_id])
        return found

    def _new_profile(self) -> Profile:
        self._seq += 1
        now = time.time()
        profile = Profile(id=f"guest-{self._seq:05d}", created_at=now, modified_at=now)
        self._profiles[profile.id] = profile
        return profile

    def _add_identifiers(self, profile: Profile, identifiers: Any, keys: list[Key]) -> None:
        for item in identifiers if isinstance(identifiers, list) else []:
            pair = (item.get("provider"), item.get("id"))
            existing = next(
                (i for i in profile.identifiers if (i.get("provider"), i.get("id")) == pair), None
            )
            if existing is None:
                profile.identifiers.append(dict(item))
            else:
                existing.update(item)  # e.g. a new expiryDate
        for key in keys:
            self._index[key] = profile.id

    def _absorb(self, primary: Profile, other: Profile) -> None:
        """Merge `other` into `primary` (identity rules resolved both to one guest)."""
        for item in other.identifiers:
            if item not in primary.identifiers:
                primary.identifiers.append(item)
        for name, value in other.fields.items():
            primary.fields.setdefault(name, value)
        for name, group in other.extensions.items():
            primary.extensions.setdefault(name, group)
        primary.refs = other.refs + primary.refs
        primary.batches = list(dict.fromkeys(other.batches + primary.batches))
        for key, profile_id in list(self._index.items()):
            if profile_id == other.id:
                self._index[key] = primary.id
        for order in self._orders.values():
            if order["guest"] == other.id:
                order["guest"] = primary.id
        del self._profiles[other.id]

    def _merge_value(self, profile: Profile, value: dict[str, Any], keys: list[Key]) -> None:
        # Upsert updates only the fields present (§2.1 notes); an extension group is
        # overwritten as a whole (S-GEXT).
        for name, field_value in value.items():
            if name not in SPECIAL_GUEST_KEYS:
                profile.fields[name] = copy.deepcopy(field_value)
        for group in value.get("extensions", []):
            profile.extensions[group["name"]] = copy.deepcopy(group)
        for sub in value.get("subscriptions", []):
            same = (sub["name"], sub["pointOfSale"], sub["channel"])
            profile.subscriptions = [
                s
                for s in profile.subscriptions
                if (s["name"], s["pointOfSale"], s["channel"]) != same
            ]
            profile.subscriptions.append(copy.deepcopy(sub))
        self._add_identifiers(profile, value.get("identifiers"), keys)

    def upsert_guest(
        self, record_ref: str, batch_ref: str, value: dict[str, Any], keys: list[Key]
    ) -> tuple[str, str]:
        """Update the matching guest or create one; returns the (code, message) outcome."""
        with self.lock:
            matches = self._matches(keys)
            if matches:
                profile = matches[0]  # the highest-priority identity rule wins (S-IDRULES)
                for other in matches[1:]:
                    self._absorb(profile, other)
            else:
                profile = self._new_profile()
            self._merge_value(profile, value, keys)
            profile.touched_by(record_ref, batch_ref)
            return "200", "OK"

    def create_guest(
        self, record_ref: str, batch_ref: str, value: dict[str, Any], keys: list[Key]
    ) -> tuple[str, str]:
        """Create a guest; S-LOG 409 when one of its identities already exists."""
        with self.lock:
            if self._matches(keys):
                raise Rejected("409", "Conflict", "a guest with this identity already exists")
            profile = self._new_profile()
            self._merge_value(profile, value, keys)
            profile.touched_by(record_ref, batch_ref, "create")
            return "201", "Created"

    def delete_guest(self, keys: list[Key], *, gdpr: bool) -> tuple[str, str]:
        """Delete the first matching guest (S-GDEL); gdpr_delete also removes its orders."""
        with self.lock:
            matches = self._matches(keys)
            if not matches:
                raise Rejected("404", GUEST_NOT_FOUND, "no guest has these identifiers")
            victim = matches[0]
            for key, profile_id in list(self._index.items()):
                if profile_id == victim.id:
                    del self._index[key]
            del self._profiles[victim.id]
            for order_key, order in list(self._orders.items()):
                if order["guest"] == victim.id:
                    if gdpr:
                        del self._orders[order_key]
                    else:
                        order["guest"] = None
            if len(matches) > 1:
                return "200", f"{len(matches)} matches found for this guest, 1st match deleted"
            return "200", GUEST_DELETED

    def migrate_guest(
        self, record_ref: str, batch_ref: str, source: list[Key], target: list[Key]
    ) -> tuple[str, str]:
        """Move the `migrateFrom` guest's entities to the `migrateTo` guest (S-GMIG).

        The entities the sandbox keeps per guest are its orders (tracking events are linked to
        no guest, Q4): they move. Both profiles stay, as S-GMIG describes no deletion [I]; a
        side no profile matches is 404 [I]. Each migration is listed by `migrations()`.
        """
        with self.lock:
            sources, targets = self._matches(source), self._matches(target)
            if not sources or not targets:
                side = "migrateFrom" if not sources else "migrateTo"
                raise Rejected("404", GUEST_NOT_FOUND, f"no guest matches {side}")
            src, dst = sources[0], targets[0]
            if src.id == dst.id:
                raise Rejected("400", "Validation error", "migrateFrom and migrateTo are one guest")
            moved = 0
            for order in self._orders.values():
                if order["guest"] == src.id:
                    order["guest"] = dst.id
                    moved += 1
            src.touched_by(record_ref, batch_ref, "migrated_from")
            dst.touched_by(record_ref, batch_ref, "migrated_to")
            self._migrations.append(
                {
                    "ref": record_ref,
                    "batch": batch_ref,
                    "from": src.id,
                    "to": dst.id,
                    "orders_moved": moved,
                    "at": iso_ms(time.time()),
                }
            )
            return "200", "OK"

    # --- orders and tracking ------------------------------------------------------------

    def put_order(
        self,
        record_ref: str,
        batch_ref: str,
        mode: str,
        value: dict[str, Any],
        keys: list[Key],
    ) -> tuple[str, str]:
        """Insert or upsert an order; its guest comes from the contact's identity (§3.2)."""
        with self.lock:
            matches = self._matches(keys)
            if matches:
                guest = matches[0]
            else:
                # [I] CDP creates the contact as a guest when no profile matches.
                guest = self._new_profile()
                contact = value.get("contact", {})
                self._merge_value(guest, contact, keys)
            guest.touched_by(record_ref, batch_ref)
            order_key = (value["referenceId"], value["orderedAt"])
            existing = self._orders.get(order_key)
            previous = existing or {}
            # Upsert updates the fields present. Q5: what insert does with an existing
            # referenceId+orderedAt is unknown; the sandbox overwrites and counts the repeat.
            base = previous if mode == "upsert" else {}
            order = {**copy.deepcopy(base), **copy.deepcopy(value)}
            order.pop("contact", None)
            order["guest"] = guest.id
            order["refs"] = [*previous.get("refs", []), record_ref]
            order["repeats"] = previous.get("repeats", -1) + 1
            self._orders[order_key] = order
            return "200", "OK"

    def delete_order(self, value: dict[str, Any]) -> tuple[str, str]:
        """Delete by referenceId (+ orderedAt when several share it), as S-ODEL describes."""
        with self.lock:
            reference = value["referenceId"]
            ordered_at = value.get("orderedAt")
            if ordered_at is not None:
                if (reference, ordered_at) not in self._orders:
                    raise Rejected("404", ORDER_NOT_FOUND, "no such referenceId/orderedAt")
                del self._orders[(reference, ordered_at)]
                return "200", ORDER_DELETED
            found = [key for key in self._orders if key[0] == reference]
            if not found:
                raise Rejected("404", ORDER_NOT_FOUND, "no such referenceId")
            if len(found) > 1:
                raise Rejected("400", ORDER_AMBIGUOUS, "several orders share this referenceId")
            del self._orders[found[0]]
            return "200", ORDER_DELETED

    def add_event(self, record_ref: str, batch_ref: str, value: dict[str, Any]) -> tuple[str, str]:
        """Keep a tracking event (how it links to a guest is undocumented, Q4)."""
        with self.lock:
            self._events.append({"ref": record_ref, "batch": batch_ref, **copy.deepcopy(value)})
            return "200", "OK"

    # --- inspection -------------------------------------------------------------------

    def profiles(self) -> list[dict[str, Any]]:
        """JSON-ready list of profiles with their orders, oldest first."""
        with self.lock:
            result = []
            for profile in self._profiles.values():
                orders = [
                    {k: v for k, v in order.items() if k != "guest"}
                    for order in self._orders.values()
                    if order["guest"] == profile.id
                ]
                result.append(
                    {
                        "id": profile.id,
                        "identifiers": copy.deepcopy(profile.identifiers),
                        "fields": copy.deepcopy(profile.fields),
                        "extensions": copy.deepcopy(list(profile.extensions.values())),
                        "subscriptions": copy.deepcopy(profile.subscriptions),
                        "orders": copy.deepcopy(orders),
                        "refs": list(profile.refs),
                        "batches": list(profile.batches),
                        "history": copy.deepcopy(profile.history),
                        "created_at": iso_ms(profile.created_at),
                        "modified_at": iso_ms(profile.modified_at),
                    }
                )
            return result

    def orders(self) -> list[dict[str, Any]]:
        """Every stored order, with the id of its guest (None after a plain guest delete)."""
        with self.lock:
            return copy.deepcopy(list(self._orders.values()))

    def events(self) -> list[dict[str, Any]]:
        """Every stored tracking event."""
        with self.lock:
            return copy.deepcopy(self._events)

    def migrations(self) -> list[dict[str, Any]]:
        """Every applied guest migration: record ref, batch, from and to profile ids, orders
        moved, when."""
        with self.lock:
            return copy.deepcopy(self._migrations)
