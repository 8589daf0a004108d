import django_filters

from rewards.models import Member


class MemberFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Member.Status.choices)
    memberRefPrefix = django_filters.CharFilter(field_name="external_ref", lookup_expr="startswith")  # noqa: N815
    createdAfter = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")  # noqa: N815
    createdBefore = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")  # noqa: N815
    locale = django_filters.CharFilter()

    class Meta:
        model = Member
        fields = ["status", "memberRefPrefix", "createdAfter", "createdBefore", "locale"]
