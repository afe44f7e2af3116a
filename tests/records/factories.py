"""factory_boy factories for staged records; shared by every records test module.

GuestFactory keeps `identity_key`, `cdp_value`, `value_hash` and `validation_errors`
consistent with the columns and children it creates, by running the same refresh service the
import pipeline and the admin use. Pass `identifiers=[("CRM_ID", "C-1")]`,
`subscriptions=[{...}]` or `extensions={"ext": {"tier": "gold"}}` to shape the children.
"""

from datetime import UTC

import factory
from django.conf import settings

from records.models import Extension, Guest, Identifier, ImportRun, Subscription, TrackingEvent


def refresh(guest: Guest) -> Guest:
    """Recompute the stored value, hash, errors and status of a guest from its rows."""
    from records.services.imports import guests_refresh_values

    guests_refresh_values(guest_ids=[guest.pk])
    guest.refresh_from_db()
    return guest


class GuestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Guest
        skip_postgeneration_save = True

    mode = "upsert"
    email = factory.Sequence(lambda n: f"guest{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    country = "IE"
    guest_type = "customer"

    @factory.post_generation
    def identifiers(self, create, extracted, **kwargs):
        if not create:
            return
        pairs = extracted if extracted is not None else [("email", self.email)]
        for position, (provider, identifier) in enumerate(pairs):
            Identifier.objects.create(
                guest=self, position=position, provider=provider, identifier=identifier
            )

    @factory.post_generation
    def subscriptions(self, create, extracted, **kwargs):
        if not create or not extracted:
            return
        for position, item in enumerate(extracted):
            Subscription.objects.create(
                guest=self,
                position=position,
                name=item.get("name", "default"),
                point_of_sale=item.get("pointOfSale", "example.com"),
                channel=item.get("channel", "EMAIL"),
                status=item.get("status", "SUBSCRIBED"),
            )

    @factory.post_generation
    def extensions(self, create, extracted, **kwargs):
        if not create or not extracted:
            return
        for name, attributes in extracted.items():
            Extension.objects.create(guest=self, name=name, attributes=attributes)

    @factory.post_generation
    def canonical(self, create, extracted, **kwargs):
        # Runs last (declaration order): value, hash, identity key and errors from the rows.
        if create:
            refresh(self)


class IdentifierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identifier

    guest = factory.SubFactory(GuestFactory, identifiers=[])
    position = 0
    provider = factory.LazyFunction(lambda: settings.CDP_IDENTITY_PROVIDERS[-1])
    identifier = factory.Sequence(lambda n: f"ID-{n:06d}")


class TrackingEventFactory(factory.django.DjangoModelFactory):
    """A tracking event whose stored value matches its columns."""

    class Meta:
        model = TrackingEvent
        skip_postgeneration_save = True

    mode = "insert"
    service_identifier = "TEST_PROVIDER"
    occurred_at = factory.Faker("date_time_this_year", tzinfo=UTC)
    channel = "EMAIL"
    type = "SENT"
    identifiers = factory.Sequence(lambda n: [{"provider": "email", "id": f"t{n}@example.com"}])

    @factory.post_generation
    def canonical(self, create, extracted, **kwargs):
        if create:
            from records.services.imports import tracking_refresh_values

            tracking_refresh_values(event_ids=[self.pk])
            self.refresh_from_db()


class ImportRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ImportRun

    schema = "guest"
    format = "csv"
    original_name = "guests.csv"
    source_file = factory.django.FileField(
        filename="guests.csv", data=b"identifiers.0.provider,identifiers.0.id\n"
    )
