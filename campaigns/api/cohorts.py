"""Cohorts: `/api/v1/cohorts[/{cohortId}[:recompute | /runs]]` (seed 001 §1.4)."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from campaigns import cohorts
from campaigns.models import Cohort, CohortRun
from core.api.principals import actor_of
from core.api.schema import domain_errors
from core.api.views import TenantAPIView

MAX_MEMBER_REFS = 10_000


class CohortRunSerializer(serializers.ModelSerializer):
    cohort_id = serializers.UUIDField(read_only=True)
    progress = serializers.IntegerField(read_only=True, help_text="Percent done, 0 to 100.")
    stage = serializers.CharField(read_only=True, help_text="What the run is doing, e.g. 'matching: 3 of 10 chunks'.")
    members_total = serializers.IntegerField(read_only=True, help_text="The tenant's members when the run started.")
    members_after = serializers.IntegerField(read_only=True, help_text="The cohort's members when it finished.")
    added = serializers.IntegerField(read_only=True, help_text="Members who joined the cohort.")
    removed = serializers.IntegerField(read_only=True, help_text="Members who left it.")
    error = serializers.CharField(read_only=True, help_text="Why a FAILED run failed; empty otherwise.")

    class Meta:
        model = CohortRun
        fields = [
            "id",
            "cohort_id",
            "status",
            "progress",
            "stage",
            "members_total",
            "members_after",
            "added",
            "removed",
            "error",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class RuleField(serializers.JSONField):
    """A dynamic cohort's condition as sent; null for a static cohort."""

    def to_representation(self, value):
        return None if value == {} else value


class CohortSerializer(serializers.ModelSerializer):
    rule_json = RuleField(read_only=True, allow_null=True, help_text="DYNAMIC: the membership condition; else null.")
    member_count = serializers.IntegerField(read_only=True)
    computed_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the members were last set (STATIC) or computed (DYNAMIC)."
    )

    class Meta:
        model = Cohort
        fields = ["id", "name", "code", "kind", "rule_json", "member_count", "computed_at", "created_at", "updated_at"]
        read_only_fields = fields


class CohortDetailSerializer(CohortSerializer):
    latest_run = CohortRunSerializer(read_only=True, allow_null=True, help_text="The newest recompute, if any.")

    class Meta(CohortSerializer.Meta):
        fields = [*CohortSerializer.Meta.fields, "latest_run"]
        read_only_fields = fields


class CohortCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    code = serializers.SlugField(
        max_length=64, help_text="Unique in the tenant; campaign conditions test it with member.cohorts."
    )
    kind = serializers.ChoiceField(choices=Cohort.Kind.choices)
    member_refs = serializers.ListField(
        child=serializers.CharField(max_length=128),
        required=False,
        max_length=MAX_MEMBER_REFS,
        help_text="STATIC: the members, by memberRef (each must exist). Larger lists: the admin's CSV upload.",
    )
    rule_json = serializers.JSONField(
        required=False,
        help_text='DYNAMIC: the membership condition, e.g. {"and": [{">=": [{"var": "member.attributes.age"}, 18]}, '
        '{">=": [{"var": "activity.spend.30d"}, 100]}]}. Variables: member.attributes.<key>..., member.locale, '
        "member.tier, member.cohorts, member.createdDaysAgo, activity.spend|transactions|points.<N>d.",
    )


def cohort_detail(*, tenant, cohort: Cohort) -> dict:
    cohort.latest_run = cohorts.cohort_run_latest(tenant=tenant, cohort=cohort)
    return CohortDetailSerializer(cohort).data


class CohortListCreateApi(TenantAPIView, ListAPIView):
    queryset = Cohort.objects.none()  # for the schema; requests use get_queryset
    serializer_class = CohortSerializer

    def get_queryset(self):
        return cohorts.cohort_list(tenant=self.tenant)

    @extend_schema(operation_id="cohorts_list", summary="List cohorts", description="Ordered by code.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="cohorts_create",
        summary="Create a cohort",
        description="STATIC with `memberRefs` (an unknown memberRef is a 400 naming `memberRefs.N`), or DYNAMIC "
        "with `ruleJson` (a 400 names the failing part, e.g. `ruleJson.and.0.>=.1`); a dynamic cohort's "
        "first recompute is queued at once (`latestRun`).",
        request=CohortCreateSerializer,
        responses={201: CohortDetailSerializer, **domain_errors(e409="cohort_exists: the code is taken")},
    )
    def post(self, request):
        serializer = CohortCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cohort = cohorts.cohort_create(tenant=self.tenant, requested_by=actor_of(request), **serializer.validated_data)
        # Without a broker the first recompute has already run by now: show the cohort as it is.
        cohort = cohorts.cohort_get(tenant=self.tenant, cohort_id=cohort.pk)
        return Response(cohort_detail(tenant=self.tenant, cohort=cohort), status=status.HTTP_201_CREATED)


class CohortDetailApi(TenantAPIView):
    @extend_schema(
        operation_id="cohorts_retrieve",
        summary="Get a cohort, with its member count and latest recompute",
        responses=CohortDetailSerializer,
    )
    def get(self, request, cohort_id):
        cohort = cohorts.cohort_get(tenant=self.tenant, cohort_id=cohort_id)
        return Response(cohort_detail(tenant=self.tenant, cohort=cohort))


class CohortRecomputeApi(TenantAPIView):
    @extend_schema(
        operation_id="cohorts_recompute",
        summary="Recompute a dynamic cohort",
        description="Queues a run and answers at once; follow it on the cohort (`latestRun`) or its runs. "
        "A run already queued is returned instead of a second one.",
        request=None,
        responses={202: CohortRunSerializer, **domain_errors(e409="cohort_static: a static cohort has no rule")},
    )
    def post(self, request, cohort_id):
        cohort = cohorts.cohort_get(tenant=self.tenant, cohort_id=cohort_id)
        run = cohorts.cohort_recompute_request(tenant=self.tenant, cohort=cohort, requested_by=actor_of(request))
        # Without a broker the run has already happened by now: show it as it is.
        run.refresh_from_db()
        return Response(CohortRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class CohortRunListApi(TenantAPIView, ListAPIView):
    queryset = CohortRun.objects.none()  # for the schema; requests use get_queryset
    serializer_class = CohortRunSerializer

    def get_queryset(self):
        cohort = cohorts.cohort_get(tenant=self.tenant, cohort_id=self.kwargs["cohort_id"])
        return cohorts.cohort_run_list(tenant=self.tenant, cohort=cohort)

    @extend_schema(operation_id="cohort_runs_list", summary="A cohort's recomputes, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


urlpatterns = [
    path("cohorts", CohortListCreateApi.as_view(), name="cohort-list"),
    path("cohorts/<uuid:cohort_id>", CohortDetailApi.as_view(), name="cohort-detail"),
    path("cohorts/<uuid:cohort_id>:recompute", CohortRecomputeApi.as_view(), name="cohort-recompute"),
    path("cohorts/<uuid:cohort_id>/runs", CohortRunListApi.as_view(), name="cohort-runs"),
]
