"""CDP data-model rules (cdp-batch-api.md §3) as pure functions: the one definition of each rule.

Import, admin forms and serialisation all call these. No ORM, no I/O, no Django settings:
the configured identity providers are passed in by the caller.
"""

from .codes import (
    ACCEPTED_CURRENCY_CODES,
    CARD_TYPES,
    COUNTRY_CODES,
    CURRENCY_CODES,
    EXTENSION_KEY,
    EXTENSION_NAMES,
    FORMER_CURRENCY_CODES,
    GENDERS,
    GUEST_TYPE,
    LANGUAGE_CODES,
    ORDER_CHANNELS,
    ORDER_STATUSES,
    PAYMENT_TYPES,
    SUBSCRIPTION_CHANNELS,
    SUBSCRIPTION_STATUSES,
    TITLES,
)
from .dates import format_cdp_date, format_cdp_datetime, parse_cdp_datetime
from .extensions import (
    ATTRIBUTE_NAME_PATTERN,
    MAX_EXTENSION_ATTRIBUTES,
    MAX_EXTENSION_GROUPS,
    clean_extension,
)
from .fields import (
    EMAIL_PATTERN,
    MAX_EMAIL_LENGTH,
    MAX_LONG_TEXT_LENGTH,
    MAX_PHONE_LENGTH,
    MAX_TEXT_LENGTH,
    clean_country,
    clean_currency,
    clean_language,
)
from .guest import GUEST_FIELDS, clean_guest
from .identifiers import clean_identifier, identifier_in_use, identity_key
from .migration import MIGRATION_SIDES, clean_migration
from .modes import GUEST_MODE_WORDS, guest_at_cdp, insert_at_cdp_problem, parse_guest_mode
from .normalizers import normalize_email, normalize_lower, normalize_spaces, normalize_upper
from .orders import (
    ORDER_FIELDS,
    ORDER_ITEM_FIELDS,
    clean_order,
    order_already_delivered,
    order_key,
    order_redelivery_problems,
)
from .problems import PROBLEM_LABELS, Problem, problem_label
from .subscriptions import clean_subscription
from .tracking import TRACKING_FIELDS, clean_tracking

__all__ = [
    "ACCEPTED_CURRENCY_CODES",
    "ATTRIBUTE_NAME_PATTERN",
    "CARD_TYPES",
    "COUNTRY_CODES",
    "CURRENCY_CODES",
    "EMAIL_PATTERN",
    "EXTENSION_KEY",
    "EXTENSION_NAMES",
    "FORMER_CURRENCY_CODES",
    "GENDERS",
    "GUEST_FIELDS",
    "GUEST_TYPE",
    "GUEST_MODE_WORDS",
    "LANGUAGE_CODES",
    "MAX_EMAIL_LENGTH",
    "MAX_EXTENSION_ATTRIBUTES",
    "MAX_EXTENSION_GROUPS",
    "MAX_LONG_TEXT_LENGTH",
    "MAX_PHONE_LENGTH",
    "MAX_TEXT_LENGTH",
    "ORDER_FIELDS",
    "ORDER_ITEM_FIELDS",
    "ORDER_CHANNELS",
    "ORDER_STATUSES",
    "PAYMENT_TYPES",
    "MIGRATION_SIDES",
    "PROBLEM_LABELS",
    "SUBSCRIPTION_CHANNELS",
    "SUBSCRIPTION_STATUSES",
    "TITLES",
    "TRACKING_FIELDS",
    "Problem",
    "clean_country",
    "clean_currency",
    "clean_extension",
    "clean_guest",
    "clean_identifier",
    "clean_language",
    "clean_order",
    "clean_migration",
    "clean_subscription",
    "clean_tracking",
    "format_cdp_date",
    "format_cdp_datetime",
    "guest_at_cdp",
    "identifier_in_use",
    "insert_at_cdp_problem",
    "parse_guest_mode",
    "identity_key",
    "normalize_email",
    "order_already_delivered",
    "order_key",
    "order_redelivery_problems",
    "problem_label",
    "normalize_lower",
    "normalize_spaces",
    "normalize_upper",
    "parse_cdp_datetime",
]
