"""Staging child files: subscriptions and extension groups of staged guests."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from records.importing.staging.base import Stager, live_batch_of, locked_message
from records.mapping import MappedRow
from records.rules import (
    Problem,
    clean_extension,
    clean_subscription,
    identity_key,
    normalize_email,
)
from records.serializing import UnstorableValue, dump_value, guest_children_from_value
from records.services.values import guests_refresh_values


@dataclass(slots=True)
class _Child:
    row: int
    link: dict[str, str]
    items: list[Any]  # subscriptions: [(name, pos, channel, status, effective)]; ext: groups
    problems: list[Problem] = field(default_factory=list)
    guest_id: int | None = None


class ChildStager(Stager):
    """Rows that attach to a staged guest, found by identifier (provider + id) or email."""

    strip = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch: list[_Child] = []

    def add(self, row: int, mapped: MappedRow) -> None:
        if mapped.link is None:
            self.bad(
                row,
                "identifiers.0.id",
                "no_guest_link",
                "The row names no guest: fill identifiers.0.provider and identifiers.0.id, "
                "or email.",
            )
            return
        child = self.prepare_row(row, mapped)
        if child is None:
            return
        self.batch.append(child)
        if len(self.batch) >= self.batch_rows:
            self.flush()

    def prepare_row(self, row: int, mapped: MappedRow) -> _Child | None:
        raise NotImplementedError

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        batch = self._resolve(batch)
        if not batch:
            return
        touched = self.apply(batch)
        if touched and self.writing:
            guests_refresh_values(guest_ids=touched)

    def apply(self, batch: list[_Child]) -> set[int]:
        raise NotImplementedError

    def _resolve(self, batch: list[_Child]) -> list[_Child]:
        """Find each row's guest; rows whose guest is unknown, ambiguous or locked are bad."""
        by_ident: dict[tuple[str, str], list[_Child]] = defaultdict(list)
        by_email: dict[str, list[_Child]] = defaultdict(list)
        for child in batch:
            link = child.link
            if "provider" in link:
                provider = link["provider"].strip()
                key = identity_key([link], identity_providers=[provider])
                if key is None:
                    self.bad(
                        child.row, "identifiers.0.id", "no_guest_link", "The identifier is empty."
                    )
                    continue
                by_ident[(provider, key[len(provider) + 1 :])].append(child)
            else:
                by_email[normalize_email(link["email"])].append(child)
        found: dict[Any, set[tuple[int, int | None]]] = defaultdict(set)
        if by_ident:
            providers, ids = zip(*by_ident, strict=True)
            self.cursor.execute(
                f"""SELECT i.provider, i.identifier, g.id, {live_batch_of("g")}
                     FROM records_identifier i
                     JOIN unnest(%s::text[], %s::text[]) AS v(provider, identifier)
                       ON i.provider = v.provider AND i.identifier = v.identifier
                     JOIN records_guest g ON g.id = i.guest_id""",
                [list(providers), list(ids)],
            )
            for provider, ident, gid, locked in self.cursor.fetchall():
                found[(provider, ident)].add((gid, locked))
        if by_email:
            self.cursor.execute(
                f"SELECT g.email, g.id, {live_batch_of('g')} FROM records_guest g"
                " WHERE g.email = ANY(%s)",
                [list(by_email)],
            )
            for email, gid, locked in self.cursor.fetchall():
                found[email].add((gid, locked))
        kept: list[_Child] = []
        groups = [(k, v, "identifiers.0.id", "identifier") for k, v in by_ident.items()] + [
            (k, v, "email", "email address") for k, v in by_email.items()
        ]
        for key, children, column, what in groups:
            guests = found.get(key, set())
            for child in children:
                if not guests:
                    self.bad(
                        child.row,
                        column,
                        "guest_not_staged",
                        f"No staged guest has this {what}; import the guest first.",
                    )
                elif len(guests) > 1:
                    self.bad(
                        child.row,
                        column,
                        "ambiguous_guest",
                        f"{len(guests)} staged guests have this {what}; link the row by an "
                        "identity identifier instead.",
                    )
                else:
                    ((gid, locked),) = guests
                    if locked is not None:
                        self.bad(child.row, column, "locked", locked_message(locked))
                    else:
                        child.guest_id = gid
                        kept.append(child)
        kept.sort(key=lambda c: c.row)
        return kept


class SubscriptionStager(ChildStager):
    """One subscription a row: it replaces the guest's subscription with the same name, point
    of sale and channel, or is added after the guest's others. Other subscriptions are kept."""

    strip = "subscriptions.0."

    def prepare_row(self, row: int, mapped: MappedRow) -> _Child | None:
        value, problems = clean_subscription(mapped.value, index=0)
        try:
            children = guest_children_from_value({"subscriptions": [value]})
        except UnstorableValue as exc:
            self.bad(row, exc.field.removeprefix(self.strip), exc.code, exc.message)
            return None
        return _Child(row, mapped.link or {}, [children.subscriptions[0][1:]], problems)

    def apply(self, batch: list[_Child]) -> set[int]:
        ids = sorted({c.guest_id for c in batch if c.guest_id is not None})
        self.cursor.execute(
            """SELECT guest_id, position, name, point_of_sale, channel, status, effective_date
                 FROM records_subscription WHERE guest_id = ANY(%s)""",
            [ids],
        )
        current: dict[int, dict[tuple[str, str, str], tuple[int, str, datetime | None]]] = (
            defaultdict(dict)
        )
        next_position: dict[int, int] = defaultdict(int)
        for gid, position, name, pos, channel, status, effective in self.cursor.fetchall():
            current[gid][(name, pos, channel)] = (position, status, effective)
            next_position[gid] = max(next_position[gid], position + 1)
        changes: dict[tuple[int, tuple[str, str, str]], tuple[int, str, datetime | None]] = {}
        for child in batch:
            gid = child.guest_id
            assert gid is not None
            name, pos, channel, status, effective = child.items[0]
            natural = (name, pos, channel)
            had = current[gid].get(natural)
            if child.problems:
                self.invalid(child.row, child.problems, strip=self.strip)
            if had is not None and had[1:] == (status, effective):
                self.counts.unchanged += 1
                self._outcome(child.row, "unchanged")
                continue
            if had is None:
                position = next_position[gid]
                next_position[gid] += 1
                self.counts.created += 1
                self._outcome(child.row, "new")
            else:
                position = had[0]
                self.counts.updated += 1
                self._outcome(child.row, "update")
            current[gid][natural] = (position, status, effective)
            changes[(gid, natural)] = (position, status, effective)
        if not changes or not self.writing:
            return set()
        keys = list(changes)
        self.cursor.execute(
            """DELETE FROM records_subscription s
                USING unnest(%s::bigint[], %s::integer[]) AS v(guest_id, position)
                WHERE s.guest_id = v.guest_id AND s.position = v.position""",
            [[k[0] for k in keys], [changes[k][0] for k in keys]],
        )
        self._copy(
            "records_subscription",
            ("guest_id", "position", "name", "point_of_sale", "channel", "status",
             "effective_date"),
            (
                (gid, p, *natural, status, eff)
                for (gid, natural), (p, status, eff) in changes.items()
            ),
        )  # fmt: skip
        return {gid for gid, _ in keys}


class ExtensionStager(ChildStager):
    """Extension groups: each group in a row replaces the guest's group of that name (CDP
    overwrites a group as a whole); the guest's other groups are kept."""

    def prepare_row(self, row: int, mapped: MappedRow) -> _Child | None:
        groups = []
        problems: list[Problem] = []
        raw_groups = mapped.value.get("extensions") or []
        for index, raw in enumerate(raw_groups):
            group, found = clean_extension(raw, index=index)
            problems.extend(found)
            if len(group) > 2:  # name and key alone: nothing to set
                groups.append(group)
        try:
            children = guest_children_from_value({"extensions": groups})
        except UnstorableValue as exc:
            self.bad(row, exc.field, exc.code, exc.message)
            return None
        return _Child(row, mapped.link or {}, list(children.extensions), problems)

    def apply(self, batch: list[_Child]) -> set[int]:
        ids = sorted({c.guest_id for c in batch if c.guest_id is not None})
        self.cursor.execute(
            """SELECT guest_id, name, key, attributes
                 FROM records_extension WHERE guest_id = ANY(%s)""",
            [ids],
        )
        current: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {
            # Django registers a text loader for jsonb on its connections; decode here.
            (gid, name): (key, orjson.loads(attrs) if isinstance(attrs, str | bytes) else attrs)
            for gid, name, key, attrs in self.cursor.fetchall()
        }
        changes: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {}
        for child in batch:
            gid = child.guest_id
            assert gid is not None
            if child.problems:
                self.invalid(child.row, child.problems)
            outcome = "unchanged"
            for name, key, attrs in child.items:
                had = current.get((gid, name))
                if had is not None and had == (key, attrs):
                    continue
                outcome = "new" if had is None and outcome != "update" else "update"
                current[(gid, name)] = changes[(gid, name)] = (key, attrs)
            self._outcome(child.row, outcome)
            if outcome == "unchanged":
                self.counts.unchanged += 1
            elif outcome == "new":
                self.counts.created += 1
            else:
                self.counts.updated += 1
        if not changes or not self.writing:
            return set()
        keys = list(changes)
        self.cursor.execute(
            """DELETE FROM records_extension e
                USING unnest(%s::bigint[], %s::text[]) AS v(guest_id, name)
                WHERE e.guest_id = v.guest_id AND e.name = v.name""",
            [[k[0] for k in keys], [k[1] for k in keys]],
        )
        self._copy(
            "records_extension",
            ("guest_id", "name", "key", "attributes"),
            ((gid, name, key, dump_value(attrs)) for (gid, name), (key, attrs) in changes.items()),
        )
        return {gid for gid, _ in keys}
