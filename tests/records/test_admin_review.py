"""Review admin: masking for users without view_pii, filters, saving through the services,
locked records, actions with counts, and change lists that never count a whole table."""

import pytest
from django import forms
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cdpstage.admin import paginator as counting
from cdpstage.dbroles import table_analyze
from records.admin import delivery as delivery_admin
from records.admin.filters import CountryFilter
from records.admin.guests import GuestAdmin
from records.models import BatchMembership, Guest, GuestMode, ReviewStatus, TrackingEvent
from tests.records.factories import GuestFactory, TrackingEventFactory

pytestmark = pytest.mark.django_db

DISTINCT_EMAIL = "zelda.quixotica@distinctive-mail.org"
DISTINCT_FIRST = "Quixotica"
DISTINCT_CRM = "CRM-ZX-998877"

REVIEWER_PERMS = (
    "records.view_guest",
    "records.change_guest",
    "records.view_identifier",
    "records.view_subscription",
    "records.view_extension",
    "records.view_trackingevent",
    "records.change_trackingevent",
    "records.review_guest",
    "records.review_trackingevent",
)
EDITOR_PERMS = (
    *REVIEWER_PERMS,
    "records.view_pii",
    "records.change_identifier",
    "records.add_identifier",
    "records.change_subscription",
    "records.change_extension",
)

CHANGELIST = reverse("admin:records_guest_changelist")


def _change_url(guest):
    return reverse("admin:records_guest_change", args=[guest.pk])


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The error-code filter caches its choices per process; each test sees its own data.
    cache.clear()


@pytest.fixture
def reviewer(client, user_factory):
    user = user_factory("adm-reviewer", perms=REVIEWER_PERMS, is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def editor(client, user_factory):
    user = user_factory("adm-editor", perms=EDITOR_PERMS, is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def distinct_guest():
    return GuestFactory(
        email=DISTINCT_EMAIL,
        first_name=DISTINCT_FIRST,
        city="Ballyquixote",
        identifiers=[("email", DISTINCT_EMAIL), ("CRM_ID", DISTINCT_CRM)],
        extensions={"ext": {"loyaltyTier": "Platinumish"}},
    )


PERSONAL_SNIPPETS = (
    DISTINCT_EMAIL,
    "zelda.quixotica",
    DISTINCT_FIRST,
    DISTINCT_CRM,
    "Ballyquixote",
    "Platinumish",
)


def test_guest_changelist_masks_personal_data_for_reviewer(client, reviewer, distinct_guest):
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    for snippet in PERSONAL_SNIPPETS:
        assert snippet not in html, snippet
    assert "z***@d***.org" in html
    # The identity key "email:<the email>" would repeat the email: not shown twice.
    assert "email:z***@d***.org" not in html


def test_guest_changelist_shows_identity_key_only_when_it_adds_something(client, editor):
    GuestFactory(email="same@example.com", identifiers=[("email", "same@example.com")])
    GuestFactory(email="other@example.com", identifiers=[("CRM_ID", "CRM-4242")])
    results = _result_table(client.get(CHANGELIST).content.decode())
    assert "email:same@example.com" not in results
    assert "same@example.com" in results
    assert "<small>CRM_ID:CRM-4242</small>" in results
    header = client.get(CHANGELIST).content.decode()
    assert "column-identity_key" not in header


def test_guest_changelist_shows_personal_data_with_view_pii(client, editor, distinct_guest):
    html = client.get(CHANGELIST).content.decode()
    assert DISTINCT_EMAIL in html
    assert DISTINCT_FIRST in html


def test_guest_change_page_masks_everything_for_reviewer(client, reviewer, distinct_guest):
    response = client.get(_change_url(distinct_guest))
    assert response.status_code == 200
    html = response.content.decode()
    for snippet in PERSONAL_SNIPPETS:
        assert snippet not in html, snippet
    # Read-only: no field to edit and no Save button for someone who cannot see the record.
    assert response.context["adminform"].form.fields == {}
    assert 'name="_save"' not in html
    assert "Save and mark ready" not in html
    assert "C***" in html  # the CRM identifier, masked


def test_guest_change_page_shows_everything_with_view_pii(client, editor, distinct_guest):
    html = client.get(_change_url(distinct_guest)).content.decode()
    for snippet in PERSONAL_SNIPPETS:
        assert snippet in html, snippet
    assert "Delivery history" in html


def test_guest_search_matches_for_masked_user(client, reviewer, distinct_guest):
    GuestFactory.create_batch(2)
    for term in (DISTINCT_EMAIL, DISTINCT_EMAIL.upper(), DISTINCT_CRM, str(distinct_guest.ref)):
        response = client.get(CHANGELIST, {"q": term})
        assert [g.pk for g in response.context["cl"].result_list] == [distinct_guest.pk], term
        results = _result_table(response.content.decode())
        assert "z***@d***.org" in results
        assert DISTINCT_EMAIL not in results
        assert DISTINCT_FIRST not in results


def _result_table(html: str) -> str:
    # The rows only: the search box and sort links echo the user's own search term.
    start = html.index("<tbody>", html.index('id="result_list"'))
    return html[start : html.index("</tbody>", start)]


def test_guest_error_code_filter(client, reviewer):
    invalid = GuestFactory(email="no-at-sign")
    GuestFactory()
    choices = client.get(CHANGELIST).content.decode()
    assert "?error_code=invalid_email" in choices  # offered as a filter choice
    response = client.get(CHANGELIST, {"error_code": "invalid_email"})
    assert [g.pk for g in response.context["cl"].result_list] == [invalid.pk]


def test_guest_has_identifier_filter(client, reviewer):
    with_identifier = GuestFactory()
    without = GuestFactory(identifiers=[])
    response = client.get(CHANGELIST, {"has_identifier": "no"})
    assert [g.pk for g in response.context["cl"].result_list] == [without.pk]
    response = client.get(CHANGELIST, {"has_identifier": "yes"})
    assert [g.pk for g in response.context["cl"].result_list] == [with_identifier.pk]


def test_guest_country_and_locked_filters(client, reviewer):
    french = GuestFactory(country="FR")
    irish = GuestFactory(country="IE")
    BatchMembership.objects.create(batch_id=5, kind="guest", record_id=irish.pk)
    response = client.get(CHANGELIST, {"country": "FR"})
    assert [g.pk for g in response.context["cl"].result_list] == [french.pk]
    assert "FR" in [c for c, _ in CountryFilter.lookups(None, None, None)]
    response = client.get(CHANGELIST, {"locked": "yes"})
    assert [g.pk for g in response.context["cl"].result_list] == [irish.pk]


def _post_data(response) -> dict:
    """The change form as a browser would post it back, built from the rendered forms."""
    data: dict = {}

    def add(form):
        for bound in form:
            if bound.field.disabled:
                continue
            value = bound.value()
            widget = bound.field.widget
            if isinstance(widget, forms.MultiWidget):
                parts = value if isinstance(value, list) else widget.decompress(value)
                for i, part in enumerate(parts):
                    data[f"{bound.html_name}_{i}"] = "" if part is None else str(part)
            elif isinstance(widget, forms.CheckboxInput):
                if value:
                    data[bound.html_name] = "on"
            else:
                data[bound.html_name] = "" if value is None else str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def test_guest_save_revalidates_and_shows_errors(client, editor, distinct_guest):
    url = _change_url(distinct_guest)
    data = _post_data(client.get(url))
    data["email"] = "broken-address"
    data["_continue"] = "1"
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    distinct_guest.refresh_from_db()
    assert distinct_guest.email == "broken-address"
    assert distinct_guest.review_status == ReviewStatus.INVALID
    html = response.content.decode()
    error = next(e for e in distinct_guest.validation_errors if e["field"] == "email")
    assert error["message"] in html


def test_guest_save_of_inline_identifier_updates_identity(client, editor):
    guest = GuestFactory(identifiers=[("CRM_ID", "C-100")])
    url = _change_url(guest)
    data = _post_data(client.get(url))
    data["identifiers-0-identifier"] = "C-200"
    client.post(url, data)
    guest.refresh_from_db()
    assert guest.identity_key == "CRM_ID:C-200"
    assert '"id":"C-200"' in guest.cdp_value


def test_guest_page_read_only_without_view_pii_but_list_actions_stay(
    client, reviewer, distinct_guest
):
    url = _change_url(distinct_guest)
    assert client.post(url, {"language": "FR", "email": "attacker@example.com"}).status_code == 403
    distinct_guest.refresh_from_db()
    assert distinct_guest.email == DISTINCT_EMAIL
    assert distinct_guest.language != "FR"
    # The reviewer still marks records ready from the list (obj-less change permission).
    response = client.post(
        CHANGELIST, {"action": "mark_ready", "_selected_action": [distinct_guest.pk]}, follow=True
    )
    assert "1 guest marked ready." in response.content.decode()


def test_guest_page_read_only_without_change_permission(client, user_factory, distinct_guest):
    viewer = user_factory(
        "pii-viewer", perms=("records.view_guest", "records.view_pii"), is_staff=True
    )
    client.force_login(viewer)
    html = client.get(_change_url(distinct_guest)).content.decode()
    assert DISTINCT_EMAIL in html
    assert 'name="_save"' not in html
    assert "Save and mark ready" not in html


def test_guest_form_choices_are_selects_of_the_valid_values(client, editor):
    from records.rules import COUNTRY_CODES, GENDERS

    guest = GuestFactory(country="ZZ", gender="male")
    form = client.get(_change_url(guest)).context["adminform"].form
    country = [value for value, _ in form.fields["country"].widget.choices]
    assert set(country) == {"", "ZZ", *COUNTRY_CODES}  # the invalid value stays visible
    assert dict(form.fields["country"].widget.choices)["ZZ"] == "ZZ (not valid)"
    assert [v for v, _ in form.fields["gender"].widget.choices] == ["", *GENDERS]
    assert "EN" in dict(form.fields["language"].widget.choices)


def test_guest_save_and_mark_ready(client, editor):
    guest = GuestFactory(email="ready.soon@example.com")
    url = _change_url(guest)
    page = client.get(url)
    assert 'name="_save_mark_ready"' in page.content.decode()
    data = _post_data(page)
    data["city"] = "Cork"
    data["_save_mark_ready"] = "Save and mark ready"
    response = client.post(url, data, follow=True)
    guest.refresh_from_db()
    assert guest.city == "Cork"
    assert guest.review_status == ReviewStatus.READY
    assert "1 guest marked ready." in response.content.decode()
    # An invalid record is saved but not marked ready, and the page says why.
    data = _post_data(client.get(url))
    data["email"] = "broken-address"
    data["_save_mark_ready"] = "Save and mark ready"
    response = client.post(url, data, follow=True)
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.INVALID
    assert "skipped because they are invalid" in response.content.decode()


def test_guest_page_shows_delivery_history_before_the_person(client, editor, distinct_guest):
    html = client.get(_change_url(distinct_guest)).content.decode()
    assert html.index("Delivery history") < html.index(">Person<")
    assert html.index("Delivery history") < html.index("CDP value")


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("zelda.qui", True),  # email prefix
        ("ZELDA.QUI", True),
        ("CRM-ZX-99", True),  # identifier prefix
        ("lovelac", True),  # last name prefix, any case
        ("quixotica love", True),  # first and last name prefixes
        ("ze", False),  # too short for a prefix
        ("elda", False),  # not a prefix
    ],
)
def test_guest_search_by_prefix(client, reviewer, distinct_guest, term, found):
    Guest.objects.filter(pk=distinct_guest.pk).update(last_name="Lovelace")
    GuestFactory.create_batch(2)
    response = client.get(CHANGELIST, {"q": term})
    ids = [g.pk for g in response.context["cl"].result_list]
    assert ids == ([distinct_guest.pk] if found else []), term
    assert "Starts with" in response.content.decode()


def test_locked_guest_is_read_only_with_banner(client, editor, distinct_guest):
    BatchMembership.objects.create(batch_id=12, kind="guest", record_id=distinct_guest.pk)
    url = _change_url(distinct_guest)
    response = client.get(url)
    html = response.content.decode()
    assert "This guest is in batch 12, which has not finished" in html
    assert 'name="_save"' not in html
    assert client.post(url, {"email": "x@example.com"}).status_code == 403


def test_guest_save_race_with_batch_lock_reports_error(client, editor, distinct_guest):
    url = _change_url(distinct_guest)
    data = _post_data(client.get(url))
    BatchMembership.objects.create(batch_id=13, kind="guest", record_id=distinct_guest.pk)
    data["city"] = "Cork"
    # The page was opened before the lock: has_change_permission now refuses the POST.
    assert client.post(url, data).status_code == 403
    distinct_guest.refresh_from_db()
    assert distinct_guest.city == "Ballyquixote"


def test_guest_save_refused_by_service_is_reported_and_rolled_back(client, editor):
    taken = GuestFactory(identifiers=[("CRM_ID", "TAKEN-1")])
    guest = GuestFactory(identifiers=[("CRM_ID", "FREE-1")])
    url = _change_url(guest)
    data = _post_data(client.get(url))
    data["identifiers-0-identifier"] = "TAKEN-1"
    data["city"] = "Limerick"
    response = client.post(url, data, follow=True)
    text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert f"Another staged guest (id {taken.pk}) already has this identity" in text
    assert "was changed successfully" not in text
    guest.refresh_from_db()
    assert guest.identity_key == "CRM_ID:FREE-1"
    assert guest.city != "Limerick"
    assert guest.identifiers.get().identifier == "FREE-1"


def test_mark_ready_action_reports_counts(client, reviewer):
    valid = GuestFactory.create_batch(2)
    invalid = GuestFactory(email="nope")
    ids = [g.pk for g in valid] + [invalid.pk]
    response = client.post(
        CHANGELIST, {"action": "mark_ready", "_selected_action": ids}, follow=True
    )
    text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "2 guests marked ready." in text
    assert "1 skipped because they are invalid" in text
    assert Guest.objects.filter(review_status=ReviewStatus.READY).count() == 2


def test_hold_and_back_to_new_actions(client, reviewer):
    guest = GuestFactory()
    client.post(CHANGELIST, {"action": "hold", "_selected_action": [guest.pk]})
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.HELD
    client.post(CHANGELIST, {"action": "mark_new", "_selected_action": [guest.pk]})
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.NEW


def test_auditor_sees_read_only_pages_without_actions(client, user_factory, distinct_guest):
    auditor = user_factory(
        "adm-auditor", perms=("records.view_guest", "records.view_identifier"), is_staff=True
    )
    client.force_login(auditor)
    response = client.get(CHANGELIST)
    assert "mark_ready" not in response.content.decode()
    page = client.get(_change_url(distinct_guest)).content.decode()
    assert 'name="_save"' not in page
    assert DISTINCT_EMAIL not in page
    response = client.post(CHANGELIST, {"action": "mark_ready", "_selected_action": [1]})
    distinct_guest.refresh_from_db()
    assert distinct_guest.review_status == ReviewStatus.NEW


def test_delete_refused_for_delivered_guest(client, user_factory):
    superuser = user_factory("adm-super", is_staff=True, is_superuser=True)
    client.force_login(superuser)
    delivered = GuestFactory()
    Guest.objects.filter(pk=delivered.pk).update(delivery_status="delivered")
    url = reverse("admin:records_guest_delete", args=[delivered.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert Guest.objects.filter(pk=delivered.pk).exists()
    plain = GuestFactory()
    client.post(reverse("admin:records_guest_delete", args=[plain.pk]), {"post": "yes"})
    assert not Guest.objects.filter(pk=plain.pk).exists()


def test_delivery_history_hook_renders_registered_renderer(
    client, editor, distinct_guest, monkeypatch
):
    # monkeypatch restores the batches app's real renderer afterwards (other tests need it).
    monkeypatch.setitem(
        delivery_admin._delivery_history_renderers,
        Guest,
        lambda guest: f"History of guest {guest.pk}",
    )
    html = client.get(_change_url(distinct_guest)).content.decode()
    assert f"History of guest {distinct_guest.pk}" in html


def _count_queries(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]


def test_changelist_beyond_the_limit_says_about_and_never_counts_fully(
    client, reviewer, monkeypatch
):
    GuestFactory.create_batch(5)
    with connection.cursor() as cursor:
        table_analyze(cursor, Guest._meta.db_table)
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", 2)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(CHANGELIST)
    assert response.status_code == 200
    counts = _count_queries(captured)
    assert counts
    assert all("LIMIT 3" in sql for sql in counts), counts
    paginator = response.context["cl"].paginator
    assert paginator.is_estimate
    assert paginator.count == 5  # reltuples after ANALYZE
    page = response.content.decode()
    assert "about 5 guests" in page
    assert "5 guests" not in page.replace("about 5 guests", "")


def test_changelist_filtered_beyond_the_limit_uses_the_planner_estimate(
    client, reviewer, monkeypatch
):
    GuestFactory.create_batch(5)
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", 2)
    response = client.get(CHANGELIST, {"review_status__exact": "new"})
    assert response.status_code == 200
    paginator = response.context["cl"].paginator
    assert paginator.is_estimate
    # Never below what is known for sure: more than the limit.
    assert paginator.count >= 3
    assert f"{paginator.count_display} guests" in response.content.decode()


def test_changelist_up_to_the_limit_counts_exactly(client, reviewer, monkeypatch):
    GuestFactory.create_batch(3)
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", 3)
    response = client.get(CHANGELIST, {"review_status__exact": "new"})
    paginator = response.context["cl"].paginator
    assert not paginator.is_estimate
    assert paginator.count == 3
    page = response.content.decode()
    assert "3 guests" in page
    assert "about" not in page.split('class="paginator"')[1]


def test_changelist_select_all_of_an_estimate_says_the_action_limit(client, reviewer, monkeypatch):
    GuestFactory.create_batch(5)
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", 2)
    monkeypatch.setattr(GuestAdmin, "list_per_page", 2)
    page = client.get(CHANGELIST).content.decode()
    assert "Select all about " in page
    assert "more than the 2 an action changes at once" in page
    # ... and the action refuses that selection with the same number.
    response = client.post(
        CHANGELIST,
        {"action": "mark_ready", "select_across": "1", "_selected_action": ["0"]},
        follow=True,
    )
    text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "more than 2 guests" in text
    assert not Guest.objects.filter(review_status=ReviewStatus.READY).exists()


def test_changelist_page_past_a_too_high_estimate_is_empty_not_an_error(
    client, reviewer, monkeypatch
):
    GuestFactory.create_batch(3)
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", 1)
    monkeypatch.setattr(counting, "_table_estimate", lambda table: 1_000_000)
    response = client.get(CHANGELIST, {"p": "5000"})
    assert response.status_code == 200
    assert response.context["cl"].paginator.count == 1_000_000
    assert list(response.context["cl"].result_list) == []
    assert "about 1,000,000 guests" in response.content.decode()


def test_about_rounds_to_three_significant_digits():
    assert counting.about(123_456) == "about 123,000"
    assert counting.about(20_001) == "about 20,000"
    assert counting.about(987) == "about 987"
    assert counting.about(1_234_567) == "about 1,230,000"


def test_changelist_small_table_counts_exactly_with_limit(client, reviewer):
    GuestFactory.create_batch(2)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(CHANGELIST)
    assert response.context["cl"].result_count == 2
    assert all("LIMIT" in sql for sql in _count_queries(captured))


def test_tracking_changelist_and_page_mask_for_reviewer(client, reviewer):
    event = TrackingEventFactory(
        identifiers=[{"provider": "email", "id": "tracked.person@distinctive-mail.org"}],
        feedback={"reasonCode": "PRICE_TOO_HIGH", "notes": "Rang about the Quixotic order"},
    )
    lists = client.get(reverse("admin:records_trackingevent_changelist")).content.decode()
    page = client.get(
        reverse("admin:records_trackingevent_change", args=[event.pk])
    ).content.decode()
    for html in (lists, page):
        assert "tracked.person" not in html
        assert "Quixotic" not in html
    assert "PRICE_TOO_HIGH" in page


def test_tracking_mark_ready_action(client, reviewer):
    events = TrackingEventFactory.create_batch(2)
    client.post(
        reverse("admin:records_trackingevent_changelist"),
        {"action": "mark_ready", "_selected_action": [e.pk for e in events]},
    )
    assert set(TrackingEvent.objects.values_list("review_status", flat=True)) == {"ready"}


def test_guest_street_lines_edited_one_per_line(client, editor):
    guest = GuestFactory(street=["1 Old Road"])
    url = _change_url(guest)
    data = _post_data(client.get(url))
    assert data["street"] == "1 Old Road"
    data["street"] = "12 Main Street, Apartment 4\r\nBlock B\r\n"
    client.post(url, data)
    guest.refresh_from_db()
    assert guest.street == ["12 Main Street, Apartment 4", "Block B"]
    assert '"street":["12 Main Street, Apartment 4","Block B"]' in guest.cdp_value


def test_lists_link_to_the_one_import_path_with_their_schema(client, user_factory):
    stager = user_factory("adm-stager", groups=("Stager",), is_staff=True)
    client.force_login(stager)
    add = reverse("admin:records_importrun_add")
    for name, schema in (("guest", "guest"), ("trackingevent", "tracking"),
                         ("subscription", "subscription"), ("extension", "extension")):  # fmt: skip
        page = client.get(reverse(f"admin:records_{name}_changelist")).content.decode()
        assert f'href="{add}?schema={schema}"' in page
    form = client.get(f"{add}?schema=tracking").content.decode()
    assert '<option value="tracking" selected>' in form


def test_import_link_hidden_from_reviewer(client, reviewer):
    assert "import-a-file" not in client.get(CHANGELIST).content.decode()


def test_tracking_save_goes_through_service(client, user_factory):
    editor = user_factory(
        "adm-tracking-editor",
        perms=("records.view_trackingevent", "records.change_trackingevent", "records.view_pii"),
        is_staff=True,
    )
    client.force_login(editor)
    event = TrackingEventFactory()
    url = reverse("admin:records_trackingevent_change", args=[event.pk])
    data = _post_data(client.get(url))
    assert '"provider": "email"' in data["identifiers"]  # indented JSON, readable
    data["type"] = "OPENED"
    client.post(url, data)
    event.refresh_from_db()
    assert event.type == "OPENED"
    assert '"type":"OPENED"' in event.cdp_value


def test_mark_ready_action_refuses_huge_selection(client, reviewer, monkeypatch):
    monkeypatch.setattr(counting, "EXACT_COUNT_LIMIT", 2)
    GuestFactory.create_batch(3)
    response = client.post(
        CHANGELIST,
        {"action": "mark_ready", "select_across": "1", "_selected_action": ["0"]},
        follow=True,
    )
    text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "more than 2 guests" in text
    assert "manage.py records_mark_ready --schema guest" in text
    assert not Guest.objects.filter(review_status=ReviewStatus.READY).exists()


def test_guest_mode_in_the_list_filter_and_page_with_its_explanation(client, editor):
    inserted = GuestFactory(mode=GuestMode.INSERT)
    upserted = GuestFactory()
    page = client.get(CHANGELIST, {"mode__exact": GuestMode.INSERT})
    shown = [row.pk for row in page.context["cl"].result_list]
    assert shown == [inserted.pk]
    assert '<td class="field-mode_display">insert</td>' in page.content.decode()
    url = _change_url(upserted)
    response = client.get(url)
    assert "CDP does not support mode 'insert' for guests" in response.content.decode()
    data = _post_data(response)
    data["mode"] = GuestMode.INSERT
    client.post(url, data)
    upserted.refresh_from_db()
    assert upserted.mode == GuestMode.INSERT


def test_insert_mode_for_a_guest_cdp_has_makes_it_invalid(client, editor):
    guest = GuestFactory(delivery_status="delivered", delivered_hash="a" * 32)
    url = _change_url(guest)
    data = _post_data(client.get(url))
    data["mode"] = GuestMode.INSERT
    response = client.post(url, {**data, "_continue": "1"}, follow=True)
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.INVALID
    assert "insert mode only creates new guests" in response.content.decode()


def test_migration_list_is_masked_for_a_reviewer_who_marks_them_ready(client, user_factory):
    from records.models import GuestMigration

    user = user_factory(
        "mig-reviewer",
        perms=("records.view_guestmigration", "records.review_guestmigration"),
        is_staff=True,
    )
    client.force_login(user)
    migration = GuestMigration.objects.create(
        migrate_from=[{"provider": "email", "id": DISTINCT_EMAIL}],
        migrate_to=[{"provider": "CRM_ID", "id": DISTINCT_CRM}],
        from_identity_key=f"email:{DISTINCT_EMAIL}",
        to_identity_key=f"CRM_ID:{DISTINCT_CRM}",
        cdp_value="{}",
        value_hash="b" * 32,
    )
    url = reverse("admin:records_guestmigration_changelist")
    html = client.get(url).content.decode()
    assert DISTINCT_EMAIL not in html
    assert DISTINCT_CRM not in html
    page = client.get(reverse("admin:records_guestmigration_change", args=[migration.pk]))
    assert page.status_code == 200
    assert DISTINCT_EMAIL not in page.content.decode()
    client.post(url, {"action": "mark_ready", "_selected_action": [migration.pk]})
    migration.refresh_from_db()
    assert migration.review_status == ReviewStatus.READY
