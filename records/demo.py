"""Deterministic synthetic guests for the demo files (demo/guests-demo.csv, demo/guests-topup.csv).

Every name is invented and every address is at a reserved example domain (RFC 2606), so the
demo never holds anyone's real data. A fixed seed makes the file byte-for-byte reproducible;
a few rows are deliberately invalid so the review screens have something to show.
"""

import csv
import io
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DEMO_SEED = 20_251_128
DEMO_GUESTS = 3_000
# One row in this many is deliberately invalid (about 1 %).
INVALID_EVERY = 97

# The flat dotted-header convention of docs/import-formats.md / records/mapping/columns.py.
DEMO_COLUMNS: tuple[str, ...] = (
    "email",
    "title",
    "firstName",
    "lastName",
    "gender",
    "dateOfBirth",
    "phoneNumbers",
    "street",
    "city",
    "postCode",
    "country",
    "language",
    "nationality",
    "guestType",
    "identifiers.0.provider",
    "identifiers.0.id",
    "identifiers.1.provider",
    "identifiers.1.id",
    "subscriptions.0.name",
    "subscriptions.0.pointOfSale",
    "subscriptions.0.channel",
    "subscriptions.0.status",
    "subscriptions.0.effectiveDate",
    "ext.loyaltyTier",
    "ext.preferredStore",
)

FEMALE = (
    "Aoife",
    "Sarah",
    "Emma",
    "Chloé",
    "Sofia",
    "Hannah",
    "Léa",
    "Marta",
    "Giulia",
    "Anna",
    "Niamh",
    "Laura",
    "Julia",
    "Lucía",
    "Zoë",
    "Ines",
    "Freya",
    "Maja",
    "Elena",
    "Clara",
)
MALE = (
    "Seán",
    "Liam",
    "Jack",
    "Lucas",
    "Hugo",
    "Jonas",
    "Mateo",
    "Luca",
    "Noah",
    "Daniel",
    "Oisín",
    "Tom",
    "Felix",
    "Pablo",
    "Marco",
    "Pieter",
    "Finn",
    "Leo",
    "Adam",
    "Conor",
)
LAST = (
    "Murphy",
    "Kelly",
    "O'Brien",
    "Byrne",
    "Walsh",
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Martin",
    "Bernard",
    "Dubois",
    "Müller",
    "Schmidt",
    "Schneider",
    "García",
    "Fernández",
    "López",
    "Rossi",
    "Russo",
    "Bianchi",
    "de Vries",
    "Jansen",
    "Bakker",
    "Johnson",
    "Williams",
    "Miller",
    "Davis",
    "Nolan",
    "McCarthy",
    "Fitzgerald",
    "Lefèvre",
    "Fischer",
    "Weber",
    "Romero",
    "Ricci",
    "Visser",
    "Clarke",
    "Doyle",
    "Quinn",
)
DOMAINS = ("example.com", "example.org", "example.net", "mail.example")
STREETS: dict[str, tuple[str, ...]] = {
    "IE": ("Harbour Road", "Main Street", "Church Lane", "Strand Road"),
    "GB": ("Station Road", "High Street", "Mill Lane", "Victoria Road"),
    "FR": ("Rue des Lilas", "Avenue Victor Hugo", "Rue de la Paix"),
    "DE": ("Hauptstraße", "Bahnhofstraße", "Gartenweg"),
    "ES": ("Calle Mayor", "Avenida del Puerto", "Calle del Sol"),
    "IT": ("Via Roma", "Via Garibaldi", "Corso Italia"),
    "NL": ("Kerkstraat", "Dorpsstraat", "Molenweg"),
    "US": ("Oak Drive", "Park Avenue", "Maple Street", "Elm Street"),
}
# code: (language, nationality, phone prefix, [(city, post code pattern)])
COUNTRIES: dict[str, tuple[str, str, str, tuple[tuple[str, str], ...]]] = {
    "IE": (
        "EN",
        "Irish",
        "+353",
        (("Dublin", "D0# X###"), ("Cork", "T12 X###"), ("Galway", "H91 X###")),
    ),
    "GB": (
        "EN",
        "British",
        "+44",
        (("London", "SW1A #XX"), ("Leeds", "LS1 #XX"), ("Bristol", "BS1 #XX")),
    ),
    "FR": ("FR", "French", "+33", (("Paris", "750##"), ("Lyon", "6900#"), ("Nantes", "4400#"))),
    "DE": ("DE", "German", "+49", (("Berlin", "10###"), ("Munich", "80###"), ("Hamburg", "20###"))),
    "ES": (
        "ES",
        "Spanish",
        "+34",
        (("Madrid", "280##"), ("Seville", "410##"), ("Valencia", "460##")),
    ),
    "IT": ("IT", "Italian", "+39", (("Rome", "001##"), ("Milan", "201##"), ("Turin", "101##"))),
    "NL": ("NL", "Dutch", "+31", (("Amsterdam", "10## XX"), ("Utrecht", "35## XX"))),
    "US": ("EN", "American", "+1", (("Boston", "021##"), ("Denver", "802##"), ("Austin", "787##"))),
}
COUNTRY_WEIGHTS = (30, 15, 12, 12, 8, 8, 5, 10)
TIERS = ("Bronze", "Silver", "Gold", "Platinum")
SUBSCRIPTION_STATUSES = ("SUBSCRIBED", "SUBSCRIBED", "SUBSCRIBED", "UNSUBSCRIBED", "PENDING")
POINT_OF_SALE = "demo-shop.example"
REFERENCE_DAY = date(2025, 6, 1)  # fixed, so the file never depends on today's date


def _fill(pattern: str, rng: random.Random) -> str:
    letters = "ABCDEFHKNPRTWXY"
    return "".join(
        str(rng.randrange(10)) if ch == "#" else rng.choice(letters) if ch == "X" else ch
        for ch in pattern
    )


def _ascii_local(text: str) -> str:
    table = str.maketrans("éèëöüïíóáñß", "eeeouiioans")
    return "".join(ch for ch in text.lower().translate(table) if ch.isalnum())


# Deliberate problems, one kind per invalid row in turn: each is stored (it fits its column)
# but fails a CDP rule, so the row is staged as `invalid` with a readable error.
def _break_email(row: dict[str, str]) -> None:
    row["email"] = row["email"].replace("@", ".at.")


def _break_country(row: dict[str, str]) -> None:
    row["country"] = "ZZ"


def _break_birth(row: dict[str, str]) -> None:
    row["dateOfBirth"] = "2091-04-01"


def _break_gender(row: dict[str, str]) -> None:
    row["gender"] = "robot"


def _break_language(row: dict[str, str]) -> None:
    row["language"] = "QQ"


BREAKERS = (_break_email, _break_country, _break_birth, _break_gender, _break_language)


def demo_guest_rows(count: int = DEMO_GUESTS, *, seed: int = DEMO_SEED) -> Iterator[dict[str, str]]:
    """Yield `count` synthetic guest rows (column -> text), the same ones for the same seed."""
    rng = random.Random(seed)
    codes = list(COUNTRIES)
    for n in range(1, count + 1):
        gender = rng.choice(("female", "male"))
        first = rng.choice(FEMALE if gender == "female" else MALE)
        last = rng.choice(LAST)
        country = rng.choices(codes, weights=COUNTRY_WEIGHTS)[0]
        language, nationality, prefix, cities = COUNTRIES[country]
        city, post_pattern = rng.choice(cities)
        email = f"{_ascii_local(first)}.{_ascii_local(last)}{n}@{rng.choice(DOMAINS)}"
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 65))
        row = dict.fromkeys(DEMO_COLUMNS, "")
        row.update(
            {
                "email": email,
                "title": ("Ms" if gender == "female" else "Mr") if rng.random() < 0.6 else "",
                "firstName": first,
                "lastName": last,
                "gender": gender,
                "dateOfBirth": born.isoformat(),
                "phoneNumbers": f"{prefix} {rng.randrange(10**8, 10**9)}",
                "street": f"{rng.randrange(1, 200)} {rng.choice(STREETS[country])}",
                "city": city,
                "postCode": _fill(post_pattern, rng),
                "country": country,
                "language": language,
                "nationality": nationality,
                "guestType": "customer",
                "identifiers.0.provider": "email",
                "identifiers.0.id": email,
            }
        )
        if rng.random() < 0.3:
            row["identifiers.1.provider"] = "CRM_ID"
            row["identifiers.1.id"] = f"CRM-{n:06d}"
        if rng.random() < 0.6:
            since = REFERENCE_DAY - timedelta(days=rng.randrange(1, 900))
            effective = datetime(since.year, since.month, since.day, 9, 30, tzinfo=UTC)
            row.update(
                {
                    "subscriptions.0.name": "newsletter",
                    "subscriptions.0.pointOfSale": POINT_OF_SALE,
                    "subscriptions.0.channel": "EMAIL",
                    "subscriptions.0.status": rng.choice(SUBSCRIPTION_STATUSES),
                    "subscriptions.0.effectiveDate": effective.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                }
            )
        if rng.random() < 0.7:
            row["ext.loyaltyTier"] = rng.choice(TIERS)
            row["ext.preferredStore"] = rng.choice(cities)[0]
        if n % INVALID_EVERY == 0:
            BREAKERS[(n // INVALID_EVERY) % len(BREAKERS)](row)
        yield row


def demo_invalid_count(count: int = DEMO_GUESTS) -> int:
    """How many of the first `count` demo rows are deliberately invalid."""
    return count // INVALID_EVERY


def demo_csv_text(count: int = DEMO_GUESTS, *, seed: int = DEMO_SEED) -> str:
    """The demo file's whole text (UTF-8 CSV, `\\n` line ends, dotted headers)."""
    return _csv_text(demo_guest_rows(count, seed=seed))


# The top-up extract of the README walkthrough: guests who moved since the first extract (the
# first TOPUP_MOVED rows, same identity, new street) and TOPUP_NEW guests not seen before.
TOPUP_MOVED = 100
TOPUP_NEW = 200


def demo_topup_rows() -> Iterator[dict[str, str]]:
    """Yield the top-up rows: TOPUP_MOVED updates of demo guests, then TOPUP_NEW new guests."""
    # Rows depend only on the draws before them, so the first DEMO_GUESTS rows of a longer run
    # are exactly the demo file's rows and the rest are new guests.
    for n, row in enumerate(demo_guest_rows(DEMO_GUESTS + TOPUP_NEW), start=1):
        if n <= TOPUP_MOVED:
            row["street"] = f"{n} New Street"
            yield row
        elif n > DEMO_GUESTS:
            yield row


def demo_topup_invalid_count() -> int:
    """How many top-up rows are deliberately invalid (moved ones included)."""
    return demo_invalid_count(TOPUP_MOVED) + (
        demo_invalid_count(DEMO_GUESTS + TOPUP_NEW) - demo_invalid_count(DEMO_GUESTS)
    )


def _csv_text(rows: Iterator[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=DEMO_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def demo_topup_csv_text() -> str:
    """The top-up file's whole text (same layout as the demo file)."""
    return _csv_text(demo_topup_rows())


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def write_demo_csv(path: Path, count: int = DEMO_GUESTS) -> bool:
    """Write the demo file unless it already holds exactly this content; True if written."""
    return _write_if_changed(path, demo_csv_text(count))


def write_demo_topup_csv(path: Path) -> bool:
    """Write the top-up file unless it already holds exactly this content; True if written."""
    return _write_if_changed(path, demo_topup_csv_text())
