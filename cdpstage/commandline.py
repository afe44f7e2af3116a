"""What every management command of the project shares."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError


def get_user(username: str):
    """The active user `username`, or a CommandError a person can act on."""
    user_model = get_user_model()
    try:
        return user_model.objects.get(**{user_model.USERNAME_FIELD: username}, is_active=True)
    except user_model.DoesNotExist:
        raise CommandError(f"No active user named {username!r}.") from None
