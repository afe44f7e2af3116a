"""Services: every write to staged records goes through one of these functions."""

from records.services.imports import *  # noqa: F403
from records.services.review import *  # noqa: F403
