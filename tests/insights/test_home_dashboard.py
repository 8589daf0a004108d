"""The back office's home: an operator sees their tenant's program of the last 30 days, with
charts, above the app list; platform staff are pointed at the tenant picker."""

import pytest
from django.urls import reverse

from rewards.services import points_adjust
from tenants.models import Operator
from tests.factories import MemberFactory, OperatorFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_an_operator_sees_their_tenants_figures_and_charts_on_the_home_page(client, tenant):
    other = TenantFactory(name="Elsewhere Ltd")
    mine, theirs = MemberFactory(tenant=tenant), MemberFactory(tenant=other)
    points_adjust(tenant=tenant, member=mine, points=120, reason="welcome", actor="test")
    points_adjust(tenant=tenant, member=mine, points=-20, reason="correction", actor="test")
    points_adjust(tenant=other, member=theirs, points=4321, reason="welcome", actor="test")
    client.force_login(OperatorFactory(tenant=tenant, role=Operator.Role.VIEWER).user)

    page = client.get(reverse("admin:index"))

    assert page.status_code == 200
    html = page.content.decode()
    assert f"{tenant.name}: the last 30 days" in html
    assert 'id="home-outstanding"><div>Outstanding points (liability)</div><div class="value">100<' in html
    assert 'id="home-issued"><div>Issued</div><div class="value">100<' in html  # 120 credited, 20 debited
    assert html.count("<svg viewBox") == 4
    assert "4321" not in html and "4,321" not in html and other.name not in html
    assert reverse("admin:insights_program") in html


def test_platform_staff_are_sent_to_choose_a_tenant(client, tenant):
    client.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))
    html = client.get(reverse("admin:index")).content.decode()
    assert "Choose a tenant</a> to see its figures" in html
    assert "<svg viewBox" not in html
