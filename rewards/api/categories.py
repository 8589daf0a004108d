"""Spend categories and their multipliers: `/api/v1/categories[/{code}[/multipliers[/{id}]]]`."""

from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from core.api.schema import domain_errors
from core.api.views import TenantAPIView
from rewards import categories
from rewards.ledger import MAX_POINTS
from rewards.models import Multiplier, SpendCategory
from rewards.models.earning import code_validator


class BlankAsNullCharField(serializers.CharField):
    """Shows the model's "" (none) as null."""

    def to_representation(self, value):
        return value or None


class BlankAsNullChoiceField(serializers.ChoiceField):
    def to_representation(self, value):
        return super().to_representation(value) if value else None


class CategorySerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(
        slug_field="code", read_only=True, allow_null=True, help_text="The parent category's code."
    )
    mcc_codes = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = SpendCategory
        fields = ["code", "name", "parent", "mcc_codes", "created_at", "updated_at"]
        read_only_fields = fields


class ParentField(serializers.SlugRelatedField):
    """A category code of the caller's tenant (`tenant` in the context)."""

    default_error_messages = {
        "cycle": "A category cannot be its own parent or the parent of one of its ancestors.",
    }

    def __init__(self, **kwargs):
        super().__init__(
            slug_field="code",
            queryset=SpendCategory.objects.none(),
            required=False,
            allow_null=True,
            help_text="The parent category's code, or null.",
            **kwargs,
        )

    def get_queryset(self):
        return categories.category_list(tenant=self.context["tenant"])


def mcc_codes_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(),
        required=False,
        max_length=10_000,
        help_text="Four-digit merchant category codes, as strings. An MCC belongs to at most one category.",
        error_messages={
            "invalid_mcc": "Use four digits, as a string.",
            "mcc_taken": "This MCC already belongs to another category.",
        },
        **kwargs,
    )


class CategoryCreateSerializer(serializers.Serializer):
    code = serializers.CharField(
        max_length=64, validators=[code_validator], help_text="Unique in the tenant; addresses the category."
    )
    name = serializers.CharField(max_length=200)
    parent = ParentField()
    mcc_codes = mcc_codes_field(default=list)


class CategoryUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    parent = ParentField()
    mcc_codes = mcc_codes_field()


class MultiplierSerializer(serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="code", read_only=True)
    factor = serializers.DecimalField(max_digits=8, decimal_places=4, read_only=True)
    tier = BlankAsNullCharField(read_only=True, allow_null=True, help_text="Only for members of this tier.")
    cap_period = BlankAsNullChoiceField(choices=Multiplier.Period.choices, read_only=True, allow_null=True)

    class Meta:
        model = Multiplier
        fields = [
            "id",
            "category",
            "factor",
            "valid_from",
            "valid_to",
            "tier",
            "cap_points",
            "cap_period",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MultiplierWriteSerializer(serializers.Serializer):
    factor = serializers.DecimalField(
        max_digits=8,
        decimal_places=4,
        min_value=Decimal("0"),
        help_text='A decimal string with at most 4 decimals, e.g. "1.5".',
    )
    valid_from = serializers.DateTimeField(required=False, allow_null=True)
    valid_to = serializers.DateTimeField(
        required=False, allow_null=True, error_messages={"invalid_window": "Must be after validFrom."}
    )
    tier = serializers.CharField(
        max_length=64, required=False, allow_blank=True, allow_null=True, help_text="Only for members of this tier."
    )
    cap_points = serializers.IntegerField(
        min_value=0,
        max_value=MAX_POINTS,
        required=False,
        allow_null=True,
        help_text="Most extra points per member per capPeriod; set with capPeriod.",
        error_messages={"required_with_period": "A cap period needs its cap: set both, or neither."},
    )
    cap_period = serializers.ChoiceField(
        choices=Multiplier.Period.choices,
        required=False,
        allow_null=True,
        error_messages={"required_with_cap": "A cap needs its period: set both, or neither."},
    )

    def validate_tier(self, value):
        return value or ""

    def validate_cap_period(self, value):
        return value or ""


class CategoryListCreateApi(TenantAPIView, ListAPIView):
    queryset = SpendCategory.objects.none()  # for the schema; requests use get_queryset
    serializer_class = CategorySerializer

    def get_queryset(self):
        return categories.category_list(tenant=self.tenant)

    @extend_schema(summary="List spend categories", description="Ordered by code.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a spend category",
        description="Announces `category.created`.",
        request=CategoryCreateSerializer,
        responses={201: CategorySerializer, **domain_errors(e409="category_exists: the code is taken")},
    )
    def post(self, request):
        serializer = CategoryCreateSerializer(data=request.data, context={"tenant": self.tenant})
        serializer.is_valid(raise_exception=True)
        category = categories.category_create(tenant=self.tenant, **serializer.validated_data)
        return Response(CategorySerializer(category).data, status=status.HTTP_201_CREATED)


class CategoryDetailApi(TenantAPIView):
    @extend_schema(summary="Get a spend category", responses=CategorySerializer)
    def get(self, request, code):
        return Response(CategorySerializer(categories.category_get(tenant=self.tenant, code=code)).data)

    @extend_schema(
        summary="Update a spend category",
        description="Name, parent and MCCs; the code is fixed. Announces `category.updated` when something changed.",
        request=CategoryUpdateSerializer,
        responses=CategorySerializer,
    )
    def patch(self, request, code):
        category = categories.category_get(tenant=self.tenant, code=code)
        serializer = CategoryUpdateSerializer(data=request.data, partial=True, context={"tenant": self.tenant})
        serializer.is_valid(raise_exception=True)
        category = categories.category_update(category=category, **serializer.validated_data)
        return Response(CategorySerializer(category).data)


class MultiplierListCreateApi(TenantAPIView, ListAPIView):
    queryset = Multiplier.objects.none()  # for the schema; requests use get_queryset
    serializer_class = MultiplierSerializer

    def get_queryset(self):
        category = categories.category_get(tenant=self.tenant, code=self.kwargs["code"])
        return categories.multiplier_list(category=category)

    @extend_schema(summary="List a category's multipliers")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Add a multiplier to a category",
        description="Announces `category.updated`, naming the multiplier.",
        request=MultiplierWriteSerializer,
        responses={201: MultiplierSerializer},
    )
    def post(self, request, code):
        category = categories.category_get(tenant=self.tenant, code=code)
        serializer = MultiplierWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        multiplier = categories.multiplier_create(tenant=self.tenant, category=category, **serializer.validated_data)
        return Response(MultiplierSerializer(multiplier).data, status=status.HTTP_201_CREATED)


class MultiplierDetailApi(TenantAPIView):
    def _multiplier(self, code: str, multiplier_id: int) -> Multiplier:
        category = categories.category_get(tenant=self.tenant, code=code)
        return categories.multiplier_get(category=category, multiplier_id=multiplier_id)

    @extend_schema(summary="Get a multiplier", responses=MultiplierSerializer)
    def get(self, request, code, multiplier_id):
        return Response(MultiplierSerializer(self._multiplier(code, multiplier_id)).data)

    @extend_schema(
        summary="Update a multiplier",
        description="Any change makes a new version and announces `category.updated`.",
        request=MultiplierWriteSerializer,
        responses=MultiplierSerializer,
    )
    def patch(self, request, code, multiplier_id):
        multiplier = self._multiplier(code, multiplier_id)
        serializer = MultiplierWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        multiplier = categories.multiplier_update(multiplier=multiplier, **serializer.validated_data)
        return Response(MultiplierSerializer(multiplier).data)

    @extend_schema(summary="Delete a multiplier", description="Announces `category.updated`.", responses={204: None})
    def delete(self, request, code, multiplier_id):
        categories.multiplier_delete(multiplier=self._multiplier(code, multiplier_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
