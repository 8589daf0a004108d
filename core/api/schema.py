import copy
import re

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from drf_standardized_errors.openapi import AutoSchema as StandardizedErrorsAutoSchema
from rest_framework import serializers

from core.api.casing import camel

# core.idempotency: 1 to 255 characters, not all whitespace.
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"}

IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    type=IDEMPOTENCY_KEY_SCHEMA,
    description=(
        "Makes a retry safe: the same key with the same body replays the first response "
        "(`Idempotent-Replayed: true`); with another body it is a 422; while the first "
        "request is still running, a 409. Keys are kept at least 24 hours."
    ),
)

REQUIRED_IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    name=IDEMPOTENCY_KEY_HEADER.name,
    location=OpenApiParameter.HEADER,
    required=True,
    type=IDEMPOTENCY_KEY_SCHEMA,
    description=f"Required here (400 without it). {IDEMPOTENCY_KEY_HEADER.description}",
)


RETRY_AFTER_HEADER = {
    "schema": {"type": "integer", "minimum": 1},
    "description": "Seconds until the rate limit's window starts afresh.",
}


def _links(source_id: str, status: str, parameters: dict[str, str], targets: dict[str, str]):
    links = {name: {"operationId": target, "parameters": parameters} for name, target in targets.items()}
    return (source_id, status), links


MEMBER_REF = {"member_ref": "$response.body#/memberRef"}
ITEM_ID = {"item_id": "$response.body#/itemId"}
CAMPAIGN_ID = {"campaign_id": "$response.body#/id"}
WEBHOOK_ID = {"webhook_id": "$response.body#/webhookId"}

# What a client can do next with what an operation answered: {(operationId, status): {link name:
# OpenAPI link}}, each link naming the target operation and where its path parameters come from.
# Published as the responses' `links`, which clients and the stateful API fuzzing
# (tests/security/test_api_schemathesis_stateful.py) follow.
RESPONSE_LINKS = dict(
    [
        _links(
            "api_v1_members_create",
            "201",
            MEMBER_REF,
            {
                "GetMember": "api_v1_members_retrieve",
                "UpdateMember": "api_v1_members_partial_update",
                "DeleteMember": "api_v1_members_destroy",
                "AdjustMemberPoints": "api_v1_members_adjustments_create",
                "ListMemberTransfers": "api_v1_members_transfers_list",
                "IssueMemberToken": "api_v1_members_token_create",
                "ExportMember": "api_v1_members_export_retrieve",
            },
        ),
        _links(
            "api_v1_redemptions_create",
            "201",
            {"redemption_id": "$response.body#/redemptionId"},
            {"GetRedemption": "api_v1_redemptions_retrieve", "CancelRedemption": "redemptions_cancel"},
        ),
        _links(
            "campaigns_create",
            "201",
            CAMPAIGN_ID,
            {
                "GetCampaign": "campaigns_retrieve",
                "UpdateCampaign": "campaigns_update",
                "ActivateCampaign": "campaigns_activate",
                "PauseCampaign": "campaigns_pause",
                "EndCampaign": "campaigns_end",
            },
        ),
        _links(
            "campaigns_activate",
            "200",
            CAMPAIGN_ID,
            {"GetCampaign": "campaigns_retrieve", "PauseCampaign": "campaigns_pause", "EndCampaign": "campaigns_end"},
        ),
        _links(
            "cohorts_create",
            "201",
            {"cohort_id": "$response.body#/id"},
            {
                "GetCohort": "cohorts_retrieve",
                "ListCohortRuns": "cohort_runs_list",
                "RecomputeCohort": "cohorts_recompute",
            },
        ),
        _links(
            "api_v1_catalog_items_create",
            "201",
            ITEM_ID,
            {
                "GetCatalogItem": "api_v1_catalog_items_retrieve",
                "ReplaceCatalogItem": "api_v1_catalog_items_update",
                "UpdateCatalogItem": "api_v1_catalog_items_partial_update",
                "DeleteCatalogItem": "api_v1_catalog_items_destroy",
                "ListStockMovements": "api_v1_catalog_items_stock_movements_list",
                "RecordStockMovement": "api_v1_catalog_items_stock_movements_create",
            },
        ),
        _links(
            "api_v1_catalog_categories_create",
            "201",
            {"code": "$response.body#/code"},
            {
                "GetCatalogCategory": "api_v1_catalog_categories_retrieve",
                "UpdateCatalogCategory": "api_v1_catalog_categories_partial_update",
            },
        ),
        _links(
            "api_v1_categories_create",
            "201",
            {"code": "$response.body#/code"},
            {
                "GetCategory": "api_v1_categories_retrieve",
                "UpdateCategory": "api_v1_categories_partial_update",
                "ListMultipliers": "api_v1_categories_multipliers_list",
                "AddMultiplier": "api_v1_categories_multipliers_create",
            },
        ),
        _links(
            "api_v1_categories_multipliers_create",
            "201",
            {"code": "$request.path.code", "multiplier_id": "$response.body#/id"},
            {
                "GetMultiplier": "api_v1_categories_multipliers_retrieve",
                "UpdateMultiplier": "api_v1_categories_multipliers_partial_update",
                "DeleteMultiplier": "api_v1_categories_multipliers_destroy",
            },
        ),
        _links(
            "coupon_pools_create", "201", {"code": "$response.body#/code"}, {"AddCouponCodes": "coupon_pools_codes_add"}
        ),
        _links(
            "api_v1_credit_packages_create",
            "201",
            {"package_id": "$response.body#/id"},
            {
                "GetCreditPackage": "api_v1_credit_packages_retrieve",
                "UpdateCreditPackage": "api_v1_credit_packages_partial_update",
            },
        ),
        *(
            _links(
                "api_v1_credit_purchases_create",
                status,
                {"purchase_id": "$response.body#/id"},
                {"GetCreditPurchase": "api_v1_credit_purchases_retrieve"},
            )
            for status in ("201", "202")
        ),
        _links(
            "api_v1_tiers_create",
            "201",
            {"tier_id": "$response.body#/tierId"},
            {
                "GetTier": "api_v1_tiers_retrieve",
                "ReplaceTier": "api_v1_tiers_update",
                "UpdateTier": "api_v1_tiers_partial_update",
            },
        ),
        _links(
            "api_v1_webhooks_create",
            "201",
            WEBHOOK_ID,
            {
                "GetWebhook": "api_v1_webhooks_retrieve",
                "UpdateWebhook": "api_v1_webhooks_partial_update",
                "DeleteWebhook": "api_v1_webhooks_destroy",
                "ListWebhookDeliveries": "api_v1_webhooks_deliveries_list",
                "RotateWebhookSecret": "webhook_rotate_secret",
                "ReplayWebhookDeadLetters": "webhook_replay_dead_letters",
            },
        ),
        _links(
            "api_v1_tenants_create",
            "201",
            {"tenant_id": "$response.body#/tenantId"},
            {
                "GetTenant": "api_v1_tenants_retrieve",
                "ListTenantApiKeys": "api_v1_tenants_api_keys_list",
                "IssueTenantApiKey": "api_v1_tenants_api_keys_create",
                "GetTenantLimits": "api_v1_tenants_limits_retrieve",
            },
        ),
        _links(
            "api_v1_tenants_api_keys_create",
            "201",
            {"tenant_id": "$request.path.tenant_id", "key_id": "$response.body#/id"},
            {"RevokeTenantApiKey": "tenant_api_key_revoke"},
        ),
    ]
)


class AutoSchema(StandardizedErrorsAutoSchema):
    """Documents the standard error responses of every endpoint, the 429 of the writes that
    count against a rate limit (core/api/ratelimit.py), and the links of RESPONSE_LINKS."""

    def _get_response_bodies(self, direction="response"):
        from core.api.ratelimit import is_rate_limited, rate_limits_describe

        responses = super()._get_response_bodies(direction=direction)
        if direction == "response" and "429" not in responses and is_rate_limited(self.view, self.method):
            description = rate_limits_describe(self.view.rate_limit_scope)
            response = self._get_response_for_code(
                OpenApiResponse(DomainErrorResponseSerializer, description=description), "429"
            )
            response["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
            responses["429"] = response
        if direction == "response":
            operation_id = self.get_operation_id()
            for status, response in responses.items():
                links = RESPONSE_LINKS.get((operation_id, status))
                if links:
                    response["links"] = copy.deepcopy(links)
        return responses


def camelize_error_attrs(result, generator, request, public):
    """The error `attr` names fields as the wire spells them (camelCase)."""
    for name, schema in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("AttrEnum") and "enum" in schema:
            schema["enum"] = [camel(value) if isinstance(value, str) else value for value in schema["enum"]]
        attr = schema.get("properties", {}).get("attr")
        if isinstance(attr, dict) and "enum" in attr:
            attr["enum"] = [camel(value) if isinstance(value, str) else value for value in attr["enum"]]
    return result


class DomainErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable, e.g. insufficient_points.")
    detail = serializers.CharField()
    attr = serializers.CharField(allow_null=True, help_text="The field at fault, as spelled on the wire.")


class DomainErrorResponseSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["client_error"])
    errors = DomainErrorSerializer(many=True)
    request_id = serializers.CharField()


def domain_errors(**descriptions: str) -> dict:
    """Document 409/422 answers of an endpoint: `domain_errors(e409="...", e422="...")`."""
    return {
        int(key[1:]): OpenApiResponse(DomainErrorResponseSerializer, description=text)
        for key, text in descriptions.items()
    }


def add_request_id_to_errors(result, generator, request, public):
    """Every error body carries the request id (also in the X-Request-ID header)."""
    for schema in result.get("components", {}).get("schemas", {}).values():
        props = schema.get("properties", {})
        if "type" in props and "errors" in props and "requestId" not in props:
            props["requestId"] = {"type": "string", "description": "Also sent as the X-Request-ID header."}
            schema.setdefault("required", []).append("requestId")
    return result


ERROR_CODE_ENUM = re.compile(r"^(ErrorCode\d+|ParseErrorCode)Enum$")
NOT_FOUND_CODES = "`not_found`, or the missing thing's own code, e.g. `member_not_found`, `item_not_found`"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _listed(values) -> str:
    return ", ".join(f"`{value}`" for value in values)


def open_error_codes(result, generator, request, public):
    """Error `code`s and `attr`s are open sets, documented by example, not closed enums.

    A 404 names what was missing (`member_not_found`), a 400 `client_error` carries a domain
    code (`invalid_idempotency_key`), and a field error may name a nested field
    (`lineItems.4`) or a code from a parser (`null_characters`): a client must accept codes it
    does not know. A GET whose query parameters are validated answers 400 `validation_error`
    too, so that is documented wherever an operation takes query parameters.
    """
    schemas = result.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        if ERROR_CODE_ENUM.match(name) and "enum" in schema:
            known = NOT_FOUND_CODES if name == "ErrorCode404Enum" else _listed(schema["enum"])
            schemas[name] = {
                "type": "string",
                "description": f"Stable, machine-readable; an open set, e.g. {known}.",
                "example": schema["enum"][0],
            }

    field_components = set()
    for name, schema in list(schemas.items()):
        if schema.get("discriminator", {}).get("propertyName") != "attr":
            continue
        attrs, codes = [], []
        for option in schema.get("oneOf", []):
            component_name = option["$ref"].rsplit("/", 1)[-1]
            field_components.add(component_name)
            properties = schemas[component_name].get("properties", {})
            attrs += [value for value in properties.get("attr", {}).get("enum", []) if value not in attrs]
            codes += [value for value in properties.get("code", {}).get("enum", []) if value not in codes]
        schemas[name] = {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": f"e.g. {_listed(codes)}; an open set."},
                "detail": {"type": "string"},
                "attr": {
                    "type": "string",
                    "nullable": True,
                    "description": (
                        f"The field at fault, as spelled on the wire: {_listed(attrs)}; a nested field is "
                        "dotted (`lineItems.4.sku`)."
                    ),
                },
            },
            "required": ["code", "detail", "attr"],
        }
    for component_name in field_components:
        schemas.pop(component_name, None)

    schemas["FieldError"] = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "description": "e.g. `invalid`, `required`, `max_length`; an open set."},
            "detail": {"type": "string"},
            "attr": {"type": "string", "nullable": True, "description": "The parameter or field at fault."},
        },
        "required": ["code", "detail", "attr"],
    }
    schemas["QueryValidationErrorResponse"] = {
        "type": "object",
        "properties": {
            "type": _ref("ValidationErrorEnum"),
            "errors": {"type": "array", "items": _ref("FieldError")},
        },
        "required": ["type", "errors"],
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if not any(parameter.get("in") == "query" for parameter in operation.get("parameters", [])):
                continue
            content = operation.get("responses", {}).get("400", {}).get("content", {}).get("application/json", {})
            ref = content.get("schema", {}).get("$ref", "")
            response = schemas.get(ref.rsplit("/", 1)[-1])
            if not response or "discriminator" not in response:
                continue
            mapping = response["discriminator"].setdefault("mapping", {})
            if "validation_error" not in mapping:
                response["oneOf"].append(_ref("QueryValidationErrorResponse"))
                mapping["validation_error"] = _ref("QueryValidationErrorResponse")["$ref"]
    return result
