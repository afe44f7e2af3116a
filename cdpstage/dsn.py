"""Passwords in connection URLs (DATABASE_URL, REDIS_URL, ...) masked on error pages and in logs."""

import logging
import re

from django.views.debug import ExceptionReporter

MASK = "********"
# `scheme://user:password@` or `scheme://:password@` (Redis): the password is what goes.
DSN_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


def mask_dsn_passwords(text: str) -> str:
    """`text` with the password of every URL in it replaced by a mask."""
    return DSN_PASSWORD.sub(rf"\g<head>{MASK}@", text)


class DsnMaskingExceptionReporter(ExceptionReporter):
    """DEBUG's error page and the error mails with URL passwords masked wherever they appear:
    settings (REDIS_URL is not a name Django's filter hides), request.META (runserver copies
    the environment into it), traceback variables and the exception's own message."""

    def get_traceback_html(self) -> str:
        return mask_dsn_passwords(super().get_traceback_html())

    def get_traceback_text(self) -> str:
        return mask_dsn_passwords(super().get_traceback_text())


class DsnMaskingFormatter(logging.Formatter):
    """A formatter whose every line (message, arguments, traceback) has URL passwords masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_dsn_passwords(super().format(record))
