"""Connection-URL passwords never shown: DEBUG's error page, logs; Redis password and TLS."""

import logging
import sys

import pytest
from django.test import RequestFactory
from django.views.debug import get_exception_reporter_class
from django_rq.connection_utils import get_redis_connection
from redis.connection import SSLConnection

from cdpstage.dsn import DsnMaskingFormatter, mask_dsn_passwords


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgres://app:pa:ss@db:5432/x", "postgres://app:********@db:5432/x"),
        ("rediss://:s3cret@redis.example:6380/0", "rediss://:********@redis.example:6380/0"),
        ("see redis://u:p@h/1 and redis://h/2", "see redis://u:********@h/1 and redis://h/2"),
        ("https://api-engage-eu.sitecorecloud.io/v2/batches", None),
    ],
)
def test_mask_dsn_passwords(text, masked):
    assert mask_dsn_passwords(text) == (masked or text)


def password(name: str) -> str:
    """Built at run time, never a local variable: the page shows the test's source and locals."""
    return "-".join(("s3cret", name))


def test_debug_error_page_masks_dsn_passwords(settings):
    settings.DEBUG = True
    settings.REDIS_URL = f"redis://:{password('redis')}@redis.internal:6379/0"
    request = RequestFactory().get(
        "/admin/", DATABASE_URL=f"postgres://app:{password('db')}@db.internal:5432/cdpstage"
    )
    dsn = f"postgres://app:{password('local')}@db.internal/cdpstage"  # a traceback variable
    try:
        raise RuntimeError(f"could not connect to {dsn}")
    except RuntimeError:
        reporter = get_exception_reporter_class(request)(request, *sys.exc_info())
        html, text = reporter.get_traceback_html(), reporter.get_traceback_text()

    assert "redis.internal" in html
    assert "db.internal" in html
    for name in ("redis", "db", "local"):
        assert password(name) not in html  # ...but not their passwords
        assert password(name) not in text


def test_log_lines_mask_dsn_passwords():
    formatter = logging.getLogger().handlers[0].formatter
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "Redis %s down", ("redis://:s3cret@r:6379/0",), None
    )

    assert isinstance(formatter, DsnMaskingFormatter)
    assert formatter.format(record).endswith("Redis redis://:********@r:6379/0 down")


def test_redis_password_and_tls_come_from_the_url():
    connection = get_redis_connection(
        {"URL": "rediss://:s3cret@redis.example:6380/2?ssl_ca_certs=/etc/ssl/redis-ca.pem"}
    )
    pool = connection.connection_pool

    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["password"] == "s3cret"
    assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ssl/redis-ca.pem"
    assert pool.connection_kwargs["db"] == 2
