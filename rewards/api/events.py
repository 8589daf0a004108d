"""Inbound events: `POST /api/v1/events` and `POST /api/v1/events:batch`."""

import threading
from decimal import Decimal

from django_guid import get_guid
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core.api.casing import camel
from core.api.schema import domain_errors
from core.api.views import TenantAPIView
from core.validators import member_ref_validator
from rewards.batch import events_apply
from rewards.earning import (
    ACTION,
    MEMBER_CREATED,
    TRANSACTION_CREATED,
    TRANSACTION_REFUNDED,
    EventOutcome,
    event_ingest,
)
from rewards.models.earning import code_validator
from tenants.models import locale_validator

MAX_BATCH = 1000


def event_id_field(**kwargs) -> serializers.RegexField:
    return serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$", max_length=128, **kwargs)


MONEY = {"max_digits": 14, "decimal_places": 2, "min_value": Decimal("0.01")}


class _EventBase(serializers.Serializer):
    event_id = event_id_field(help_text="The tenant's own id for the event; it is applied once per eventId.")
    type = serializers.CharField()
    # Left out rather than defaulted here: the engine fills in the time of receipt after hashing
    # the body, so a retry of the same body replays instead of looking like another event.
    occurred_at = serializers.DateTimeField(required=False, help_text="Defaults to the time of receipt.")


class LineItemSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64, required=False)
    amount = serializers.DecimalField(**MONEY)
    category = serializers.CharField(max_length=64, required=False, validators=[code_validator])
    mcc = serializers.RegexField(r"^\d{4}$", required=False)


class TransactionCreatedSerializer(_EventBase):
    member_ref = serializers.CharField(max_length=128, validators=[member_ref_validator])
    amount = serializers.DecimalField(**MONEY)
    currency = serializers.RegexField(r"^[A-Z]{3}$")
    category = serializers.CharField(max_length=64, required=False, validators=[code_validator])
    mcc = serializers.RegexField(r"^\d{4}$", required=False)
    line_items = LineItemSerializer(many=True, required=False, max_length=500)
    channel = serializers.CharField(max_length=32, required=False)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        items = attrs.get("line_items") or []
        if sum(item["amount"] for item in items) > attrs["amount"]:
            raise serializers.ValidationError({"line_items": ["Line items add up to more than the amount."]})
        return attrs


class TransactionRefundedSerializer(_EventBase):
    original_event_id = event_id_field(help_text="The eventId of the transaction.created being refunded.")
    amount = serializers.DecimalField(**MONEY, required=False, help_text="Omit for a full refund.")
    member_ref = serializers.CharField(max_length=128, required=False, validators=[member_ref_validator])


class MemberCreatedSerializer(_EventBase):
    member_ref = serializers.CharField(max_length=128, validators=[member_ref_validator])
    # The member's own rule, checked here so that a bad locale is this event's error, not the batch's.
    locale = serializers.CharField(max_length=35, required=False, allow_blank=True, validators=[locale_validator])
    attributes = serializers.DictField(required=False)


class ActionSerializer(_EventBase):
    member_ref = serializers.CharField(max_length=128, validators=[member_ref_validator])
    action_code = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    payload = serializers.DictField(required=False)


EVENT_SERIALIZERS = {
    TRANSACTION_CREATED: TransactionCreatedSerializer,
    TRANSACTION_REFUNDED: TransactionRefundedSerializer,
    MEMBER_CREATED: MemberCreatedSerializer,
    ACTION: ActionSerializer,
}
EVENT_REQUEST = PolymorphicProxySerializer(
    component_name="InboundEvent",
    serializers=EVENT_SERIALIZERS,
    resource_type_field_name="type",
)


def event_validate(data) -> dict:
    """The validated event, or a ValidationError naming the field."""
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
    kind = data.get("type")
    # Any JSON may arrive here: a list or an object is not hashable, so test the type first.
    if not isinstance(kind, str) or kind not in EVENT_SERIALIZERS:
        raise serializers.ValidationError(
            {"type": [serializers.ErrorDetail(f"Use one of: {', '.join(EVENT_SERIALIZERS)}.", code="invalid_choice")]}
        )
    return {**_serializer_for(kind).run_validation(data), "type": kind}


_serializers = threading.local()


def _serializer_for(kind: str) -> serializers.Serializer:
    """One serializer per event type and thread, reused: a new one deep-copies its fields on
    first use (most of the cost of validating an event; a batch validates up to 1,000), and
    `run_validation` keeps nothing between calls. It raises what `is_valid` would."""
    found = getattr(_serializers, "by_kind", None)
    if found is None:
        found = _serializers.by_kind = {}
    if kind not in found:
        found[kind] = EVENT_SERIALIZERS[kind]()
    return found[kind]


class EventResultSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    type = serializers.CharField()
    member_ref = serializers.CharField()
    points = serializers.IntegerField(help_text="Points credited (negative: reversed by a refund).")
    pending = serializers.BooleanField(required=False)
    transfer_id = serializers.UUIDField(allow_null=True, required=False)
    explanation = serializers.DictField(required=False, help_text="How the points were computed, factor by factor.")


def _response(outcome: EventOutcome) -> Response:
    body = outcome.body
    if outcome.status_code >= 400:
        # A refusal the engine stored (or a dry run's) skips the exception handler, which is
        # what adds the request id to every other error.
        body = {**body, "request_id": get_guid()}
    response = Response(body, status=outcome.status_code)
    if outcome.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class EventIngestApi(TenantAPIView):
    rate_limit_scope = "events"

    @extend_schema(
        operation_id="events_ingest",
        summary="Post an event",
        description="`transaction.created`, `transaction.refunded`, `member.created` or `action`. "
        "Applied once per eventId: a repeat returns the first result (200, `Idempotent-Replayed`); "
        "the same eventId with another body is a 409. `?dryRun=true` computes without writing.",
        request=EVENT_REQUEST,
        parameters=[OpenApiParameter("dryRun", bool, description="Compute and explain, write nothing.")],
        responses={
            201: EventResultSerializer,
            200: OpenApiResponse(EventResultSerializer, description="A repeat, or a dry run"),
            **domain_errors(
                e409="The eventId was used for a different event",
                e422="Refused: currency mismatch, unknown original event, refund larger than the purchase...",
            ),
        },
    )
    def post(self, request):
        event = event_validate(request.data)
        dry_run = request.query_params.get("dryRun", "").lower() in {"1", "true", "yes"}
        return _response(event_ingest(tenant=self.tenant, event=event, dry_run=dry_run))


class EventBatchSerializer(serializers.Serializer):
    events = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=MAX_BATCH)


class EventBatchApi(TenantAPIView):
    rate_limit_scope = "events"

    def rate_limit_amount(self, request) -> int:
        """A batch counts as its number of events against the API key, so batching does not
        multiply what a key may post."""
        events = request.data.get("events") if isinstance(request.data, dict) else None
        return len(events) if isinstance(events, list) else 1

    def rate_limit_member_ref(self, request) -> None:
        # A batch carries many members; it is held to the API key's bucket only (documented).
        return None

    @extend_schema(
        operation_id="events_batch",
        summary="Post up to 1,000 events",
        description="Each event gets its own result; valid events are applied even when others are refused.",
        request=EventBatchSerializer,
        responses={200: OpenApiResponse(description="`results`: one per event, in order; `summary`: counts.")},
    )
    def post(self, request):
        batch = EventBatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        summary = {"applied": 0, "duplicate": 0, "rejected": 0, "invalid": 0}
        results: list[dict | None] = []
        valid: list[tuple[int, dict]] = []
        for index, raw in enumerate(request.data["events"]):
            try:
                valid.append((index, event_validate(raw)))
                results.append(None)
            except serializers.ValidationError as exc:
                summary["invalid"] += 1
                item = {"index": index, "eventId": raw.get("event_id")}
                results.append({**item, "status": "invalid", "httpStatus": 400, "errors": _flatten(exc.detail)})
        # The valid events in one set-based pass (rewards.batch), each with its own outcome.
        outcomes = events_apply(tenant=self.tenant, events=[event for _, event in valid])
        for (index, _event), outcome in zip(valid, outcomes, strict=True):
            outcome_status = "duplicate" if outcome.replayed else "applied" if outcome.status_code < 300 else "rejected"
            summary[outcome_status] += 1
            results[index] = {
                "index": index,
                "eventId": request.data["events"][index].get("event_id"),
                "status": outcome_status,
                "httpStatus": outcome.status_code,
                "result": outcome.body,
            }
        return Response({"results": results, "summary": summary}, status=status.HTTP_200_OK)


def _flatten(detail, prefix: str = "") -> list[dict]:
    if isinstance(detail, dict):
        return [e for key, value in detail.items() for e in _flatten(value, f"{prefix}.{key}" if prefix else key)]
    if isinstance(detail, list):
        out = []
        for i, value in enumerate(detail):
            out += _flatten(value, prefix if not isinstance(value, (dict, list)) else f"{prefix}.{i}")
        return out
    return [{"code": getattr(detail, "code", "invalid"), "detail": str(detail), "attr": camel(prefix) or None}]
