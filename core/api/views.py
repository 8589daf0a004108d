from functools import cached_property

from rest_framework.exceptions import NotAuthenticated
from rest_framework.views import APIView

from core.api.principals import request_tenant


class TenantAPIView(APIView):
    """Base for tenant-scoped endpoints: `self.tenant` comes from the credentials, so a
    selector is always called with it and another tenant's rows are unreachable."""

    @cached_property
    def tenant(self):
        tenant = request_tenant(self.request)
        if tenant is None:
            raise NotAuthenticated()
        return tenant
