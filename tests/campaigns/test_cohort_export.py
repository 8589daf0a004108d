"""A cohort's members out of the back office as CSV, from the cohort's page: that cohort's rows
only, in a file the upload form takes back."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns import cohorts
from campaigns.models import CohortMember
from tenants.models import Operator
from tests.factories import MemberFactory, OperatorFactory

pytestmark = pytest.mark.django_db


def login(client, tenant, role=Operator.Role.VIEWER) -> Operator:
    operator = OperatorFactory(tenant=tenant, role=role)
    client.force_login(operator.user)
    return operator


def static_cohort(tenant, code: str, refs: list[str]):
    for ref in refs:
        MemberFactory(tenant=tenant, external_ref=ref)
    cohort = cohorts.cohort_create(tenant=tenant, name=code.upper(), code=code, kind="STATIC", member_refs=[])
    cohorts.cohort_members_set(tenant=tenant, cohort=cohort, member_refs=refs)
    return cohort


def rows_of(response) -> list[dict]:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_cohort_page_downloads_its_members_and_the_file_uploads_again(client, tenant, other_tenant):
    vip = static_cohort(tenant, "vip", ["m-2", "m-1"])
    static_cohort(tenant, "other", ["m-3"])
    # Another tenant's cohort of the same code and members of the same memberRefs.
    static_cohort(other_tenant, "vip", ["m-1", "m-9"])
    login(client, tenant, Operator.Role.VIEWER)

    page = client.get(reverse("admin:campaigns_cohort_change", args=[vip.pk])).content.decode()
    link = reverse("admin:campaigns_cohort_members_export", args=[vip.pk])
    assert link in page
    response = client.get(link)

    rows = rows_of(response)
    assert [(row["memberRef"], row["cohort"]) for row in rows] == [("m-1", "vip"), ("m-2", "vip")]
    joined = CohortMember.objects.get(cohort=vip, member__external_ref="m-1").added_at
    assert rows[0]["joined_at"] == joined.isoformat()
    assert f'filename="cohort-{tenant.slug}-vip.csv"' in response["Content-Disposition"]

    # The download is a file the upload form reads.
    empty = cohorts.cohort_create(tenant=tenant, name="Copy", code="copy", kind="STATIC", member_refs=[])
    login(client, tenant, Operator.Role.MANAGER)
    body = b"".join(client.get(link).streaming_content)
    uploaded = client.post(
        reverse("admin:campaigns_cohort_members", args=[empty.pk]),
        {"file": SimpleUploadedFile("vip.csv", body, "text/csv"), "mode": "replace"},
    )
    assert uploaded.context["result"] == {"added": 2, "removed": 0, "unknown": []}


def test_another_tenants_cohort_is_not_found(client, tenant, other_tenant):
    theirs = static_cohort(other_tenant, "vip", ["m-1"])
    login(client, tenant, Operator.Role.OWNER)

    assert client.get(reverse("admin:campaigns_cohort_members_export", args=[theirs.pk])).status_code == 404


def test_platform_staff_download_any_tenants_cohort(client, other_tenant, platform_admin):
    theirs = static_cohort(other_tenant, "vip", ["x-1"])
    client.force_login(platform_admin)

    response = client.get(reverse("admin:campaigns_cohort_members_export", args=[theirs.pk]))

    assert [row["memberRef"] for row in rows_of(response)] == ["x-1"]
