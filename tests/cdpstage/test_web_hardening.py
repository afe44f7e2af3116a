"""Web hardening: login throttling, session lifetime, CSP, request limits, `check --deploy`."""

import re
import subprocess
import sys

import pytest
from django.urls import reverse

from tests.processes import ROOT
from tests.records.factories import ImportRunFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


def _login(client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password})


def test_login_is_locked_after_repeated_failures_even_with_the_right_password(
    client, user_factory, settings
):
    user_factory("target", is_staff=True)
    user_factory("bystander", is_staff=True)

    failures = [_login(client, "target", f"guess-{n}").status_code for n in range(5)]
    locked = _login(client, "target", "pw-target")

    assert failures == [200] * 4 + [429]  # the form again with its error, then the lock
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.text
    assert "_auth_user_id" not in client.session
    # The lock is per username and address: another account from here still logs in.
    assert _login(client, "bystander", "pw-bystander").status_code == 302


def test_session_ends_when_idle_and_at_browser_close(client, user_factory, settings):
    user_factory("staffer", is_staff=True)
    response = _login(client, "staffer", "pw-staffer")

    assert response.status_code == 302
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["expires"] == ""  # a browser-session cookie
    assert cookie["httponly"]
    assert client.session.get_expire_at_browser_close()
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST  # each request renews the idle timer


def test_pages_carry_a_csp_whose_nonce_the_inline_script_uses(client, user_factory):
    client.force_login(user_factory("boss", is_staff=True, is_superuser=True))
    run = ImportRunFactory()
    response = client.get(reverse("admin:records_importrun_change", args=[run.pk]))

    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert re.search(r"script-src 'self' 'nonce-[^']+'", policy)
    assert f'<script nonce="{nonce}">' in response.text


@pytest.mark.parametrize("query", ["q=ada%00", "review_status=%00", "import_run=1%00", "%00=1"])
def test_nul_in_a_list_filter_is_a_400_not_a_500(client, user_factory, query):
    client.force_login(user_factory("boss", is_staff=True, is_superuser=True))

    response = client.get(f"/admin/records/guest/?{query}")

    assert response.status_code == 400
    assert "NUL character" in response.text


def test_a_large_anonymous_post_is_refused_before_its_body_is_read(client):
    # The body the test client sends is empty: reading 300 MB of it would raise, so a 413
    # proves nothing was read.
    response = client.post(LOGIN, data=b"", content_type="text/plain", CONTENT_LENGTH="300000000")

    assert response.status_code == 413
    assert "File too large" in response.text
    assert "at most 3 MB" in response.text  # before login: the form limit


def test_uploads_over_the_limit_are_refused_for_logged_in_users_too(client, user_factory, settings):
    settings.UPLOAD_MAX_BYTES = 10_000_000
    client.force_login(user_factory("stager", is_staff=True, groups=("Stager",)))
    url = reverse("admin:records_importrun_add")

    too_large = client.post(url, data=b"", content_type="text/plain", CONTENT_LENGTH="10000001")
    allowed = client.get(url)

    assert too_large.status_code == 413
    assert "at most 10 MB" in too_large.text
    assert allowed.status_code == 200


def test_check_deploy_is_clean_with_production_settings():
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SECRET_KEY": "prod-like-" + "k3y" * 20,
        "DJANGO_SECURE": "1",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "cdp-stage.example.com",
        "DJANGO_SETTINGS_MODULE": "cdpstage.settings",
        "REDIS_URL": "rediss://:redis-password@redis.example.com:6380/0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
