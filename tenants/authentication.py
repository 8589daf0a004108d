from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from core.api.principals import ApiClient
from core.rls import tenant_scope_enter
from tenants.selectors import api_key_get_by_raw
from tenants.services import api_key_touch

HEADER = "X-API-Key"


class ApiKeyAuthentication(BaseAuthentication):
    """`X-API-Key: <key>`: the key decides the tenant."""

    def authenticate(self, request):
        raw = request.headers.get(HEADER)
        if raw is None:
            return None
        api_key = api_key_get_by_raw(raw=raw.strip())
        if api_key is None or api_key.is_revoked:
            raise AuthenticationFailed("Invalid or revoked API key.", code="invalid_api_key")
        if not api_key.tenant.is_active:
            raise AuthenticationFailed("This tenant is suspended.", code="tenant_suspended")
        api_key_touch(api_key=api_key)
        tenant_scope_enter(api_key.tenant_id)
        return ApiClient(tenant=api_key.tenant, api_key=api_key), api_key

    def authenticate_header(self, request) -> str:
        return HEADER


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": HEADER}
