"""CSV import and export of a tenant's catalog items (django-import-export), keyed by sku.

The tenant is always the operator's own, given by the admin; a file never names it. Rows are
written through `catalog.services`, so an import checks what the API checks (codes resolved in
the tenant, tier ids, names, optimistic locking) and records the opening stock of new items as a
movement. An existing item's stock is never set by an import: it moves only by stock movements.
"""

import json

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from import_export import fields, resources, widgets

from catalog import services
from catalog.models import Category, Item, Partner
from core.admin_scoping import adopt_saved
from core.exceptions import DomainError

# A service's name for a field -> the resource's.
SERVICE_FIELDS = {"minTier": "min_tier", "version": NON_FIELD_ERRORS}


class TenantCodeWidget(widgets.ForeignKeyWidget):
    """A category or partner named by its code, looked up in the importing tenant only."""

    def __init__(self, model, label: str, **kwargs):
        super().__init__(model, field="code", **kwargs)
        self.label = label
        self.tenant = None

    def get_queryset(self, value, row, *args, **kwargs):
        if self.tenant is None:
            return self.model.objects.none()
        return self.model.objects.filter(tenant=self.tenant)

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, str):
            value = value.strip()
        try:
            return super().clean(value, row, **kwargs)
        except self.model.DoesNotExist:
            # A ValueError is reported on the row's column rather than as a crash.
            raise ValueError(f"No {self.label} with code {value!r} in your catalog.") from None


class NamesWidget(widgets.JSONWidget):
    """Names per locale as JSON, written in their own scripts (not as \\u escapes)."""

    def render(self, value, obj=None, **kwargs):
        return json.dumps(value, ensure_ascii=False) if value else ""


class ItemResource(resources.ModelResource):
    category = fields.Field(attribute="category", column_name="category", widget=TenantCodeWidget(Category, "category"))
    partner = fields.Field(attribute="partner", column_name="partner", widget=TenantCodeWidget(Partner, "partner"))
    names = fields.Field(attribute="names", column_name="names", widget=NamesWidget(), default=dict)

    class Meta:
        model = Item
        fields = (
            "sku",
            "name",
            "names",
            "description",
            "kind",
            "category",
            "partner",
            "point_cost",
            "cash_value",
            "stock_quantity",
            "is_active",
            "is_in_offer_pool",
            "min_tier",
            "image_url",
        )
        import_id_fields = ("sku",)
        skip_unchanged = True
        report_skipped = True
        use_transactions = True

    def __init__(self, tenant=None, actor: str = "", **kwargs):
        super().__init__(**kwargs)
        self.tenant = tenant
        self.actor = actor
        for name in ("category", "partner"):
            self.fields[name].widget.tenant = tenant

    # Rows of the tenant only -------------------------------------------------------------

    def get_queryset(self):
        if self.tenant is None:
            return Item.objects.none()
        return Item.objects.filter(tenant=self.tenant).select_related("category", "partner")

    def filter_export(self, queryset, **kwargs):
        # Whatever queryset the admin hands over, only this tenant's items leave.
        if self.tenant is None:
            return queryset.none()
        return queryset.filter(tenant=self.tenant).select_related("category", "partner").order_by("sku", "pk")

    def init_instance(self, row=None):
        return Item(tenant=self.tenant)

    # Import ------------------------------------------------------------------------------

    def before_import_row(self, row, **kwargs):
        if self.tenant is None:
            raise ValidationError("Imports are made by a tenant's operator.")
        sku = row.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise ValidationError({"sku": ["Every row needs a sku: it is how the import finds the item."]})
        row["sku"] = sku.strip()

    def import_field(self, field, instance, row, is_m2m=False, **kwargs):
        if field.attribute == "stock_quantity" and not instance._state.adding:
            # An existing item's stock moves only by stock movements (reservations may be
            # holding part of it): the column sets the opening stock of new items only.
            return
        super().import_field(field, instance, row, is_m2m, **kwargs)

    def save_instance(self, instance, is_create, row, **kwargs):
        values = {name: getattr(instance, name) for name in services.ITEM_FIELDS}
        # Codes, so that the service resolves them in the tenant.
        values["category"] = instance.category.code if instance.category else None
        values["partner"] = instance.partner.code if instance.partner else None
        try:
            if is_create:
                saved = services.item_create(
                    tenant=self.tenant, actor=self.actor, stock_quantity=instance.stock_quantity, **values
                )
            else:
                saved = services.item_update(item=instance, expected_version=instance.version, fields=values)
        except DomainError as exc:
            field = SERVICE_FIELDS.get(exc.field or "", exc.field or NON_FIELD_ERRORS)
            raise ValidationError({field: [exc.message]}) from exc
        adopt_saved(instance, saved)
