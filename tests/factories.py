import time
import uuid

import factory
from django.conf import settings
from django.contrib.auth import get_user_model

from rewards.models import Member
from rewards.services import member_create
from tenants.models import Operator, Tenant
from tenants.services import tenant_create


class TenantFactory(factory.django.DjangoModelFactory):
    """Creates tenants through the service, so they get their default limits and an API key
    (the raw key is on `tenant.raw_api_key`)."""

    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Merchant {n}")
    slug = factory.Sequence(lambda n: f"merchant-{n}")
    currency = "USD"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        tenant, issued = tenant_create(**kwargs)
        tenant.raw_api_key = issued.raw
        return tenant


class MemberFactory(factory.django.DjangoModelFactory):
    """Creates members through the service, so each has its points account."""

    class Meta:
        model = Member

    tenant = factory.SubFactory(TenantFactory)
    external_ref = factory.Sequence(lambda n: f"member-{n}")
    locale = "en"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return member_create(**kwargs)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = factory.django.Password("correct-horse-battery")


class OperatorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Operator

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Operator.Role.OWNER


def member_claims(member, **overrides) -> dict:
    """The claims of a valid member token for `member`, with `overrides` (None leaves a claim
    out): what the token tests forge and tamper with."""
    now = int(time.time())
    claims = {
        "iss": settings.MEMBER_TOKEN_ISSUER,
        "aud": settings.MEMBER_TOKEN_AUDIENCE,
        "sub": str(member.pk),
        "tid": str(member.tenant_id),
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    return {name: value for name, value in claims.items() if value is not None}
