from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from rewards.models import Member


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time as UTC: PostgreSQL refuses offsets beyond 15:59 that Python parses
    (`-18:30`), which would otherwise fail the query instead of answering 400."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError as error:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from error


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class MemberFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Member.Status.choices)
    memberRefPrefix = django_filters.CharFilter(field_name="external_ref", lookup_expr="startswith")  # noqa: N815
    createdAfter = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")  # noqa: N815
    createdBefore = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")  # noqa: N815
    locale = django_filters.CharFilter()

    class Meta:
        model = Member
        fields = ["status", "memberRefPrefix", "createdAfter", "createdBefore", "locale"]
