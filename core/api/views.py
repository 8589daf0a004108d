from functools import cached_property

from rest_framework.exceptions import NotAuthenticated
from rest_framework.views import APIView

from core.api.principals import MemberClient, request_tenant


class TenantAPIView(APIView):
    """Base for tenant-scoped endpoints: `self.tenant` comes from the credentials, so a
    selector is always called with it and another tenant's rows are unreachable."""

    @cached_property
    def tenant(self):
        tenant = request_tenant(self.request)
        if tenant is None:
            raise NotAuthenticated()
        return tenant


class TenantOrMemberAPIView(TenantAPIView):
    """For endpoints members read too: `self.tenant` is the member's tenant for a member
    token, and `self.member` the member (None for the tenant's backend and operators)."""

    @cached_property
    def member(self):
        user = self.request.user
        return user.member if isinstance(user, MemberClient) else None

    @cached_property
    def tenant(self):
        if self.member is not None:
            return self.request.user.tenant
        return super().tenant
