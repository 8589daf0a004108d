"""The catalog back office: categories, partners, items (image, names per locale, optimistic
locking, stock movements, CSV import and export) and a read-only record of stock movements.

Item and category writes go through `catalog.services`, called as the form's last validation
step (`ServiceForm`), so that a refusal shows on the field it names and nothing is written. An
item's form carries the version it was loaded with: if someone saved the item since, the save
is refused. Stock is never edited on the item: it moves through the "Record stock movement"
page (`stock_record`), so an edit never overwrites what redemptions have reserved.

The catalog is the program: owners and managers change it (stock included); support and
viewers read and export it.
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV

from catalog import services
from catalog.exceptions import StaleVersion
from catalog.models import Category, Item, Partner, StockMovement
from catalog.resources import ItemResource
from core.admin_scoping import TenantScopedAdminMixin
from core.admin_services import ReadOnlyAdminMixin, ServiceForm, ServiceFormAdminMixin, TenantExportMixin
from core.exceptions import DomainError
from core.roles import PROGRAM_ROLES
from rewards import contributions
from tenants.models import Tenant

RECENT_MOVEMENTS = 20
THUMBNAIL_STYLE = "height:40px;width:auto;max-width:64px;object-fit:cover;border-radius:4px;"
PREVIEW_STYLE = "display:block;max-width:320px;max-height:240px;margin-bottom:8px;border-radius:6px;"


def _operator_label(request) -> str:
    return f"operator:{request.user.get_username()}"


def _change_url(admin_site, obj) -> str:
    opts = obj._meta
    return reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def _image_src(item: Item) -> str:
    if item.image:
        return item.image.url
    return item.image_url or ""


class NamesJsonField(forms.JSONField):
    """Names per locale as a JSON object, e.g. {"ar": "...", "he": "..."}; blank is none."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, "cols": 60, "dir": "auto"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        return {} if value in (None, "") else value

    def validate(self, value):
        super().validate(value)
        if not isinstance(value, dict):
            raise ValidationError('Give an object of locale to name, e.g. {"ar": "..."}.', code="invalid")


# Categories ------------------------------------------------------------------------------


class CategoryForm(ServiceForm):
    names = NamesJsonField(label="Names per locale", help_text='e.g. {"ar": "إلكترونيات", "he": "אלקטרוניקה"}')

    class Meta:
        model = Category
        fields = ("tenant", "code", *services.CATEGORY_FIELDS)

    def _get_validation_exclusions(self):
        # The service checks the code (CategoryAlreadyExists): a taken one is an error on the field.
        return {*super()._get_validation_exclusions(), "code"}


@admin.register(Category)
class CategoryAdmin(ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    add_roles = change_roles = PROGRAM_ROLES
    form = CategoryForm

    list_display = ("name", "code", "parent", "sort_order", "is_active", "item_count", "tenant")
    list_filter = ("is_active", "tenant")
    list_select_related = ("parent", "tenant")
    search_fields = ("name", "code")
    ordering = ("tenant", "sort_order", "name")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(items_total=Count("items"))

    @admin.display(description="items", ordering="items_total")
    def item_count(self, obj):
        return getattr(obj, "items_total", None)

    def get_fields(self, request, obj=None):
        fields = ("tenant", "code", "name", "names", "description", "parent", "sort_order", "is_active")
        return fields if obj is None else (*fields, "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The API and imports name a category by its code: fixed once created.
        return () if obj is None else ("code", "created_at", "updated_at")

    def service_write(self, request, obj, form):
        data = form.cleaned_data
        values = {name: data[name] for name in services.CATEGORY_FIELDS if name in data}
        values["parent"] = data["parent"].code if data.get("parent") else None
        if obj is None:
            tenant = self.form_tenant(request, obj, form)
            return services.category_create(tenant=tenant, code=data["code"], **values)
        # The form has applied its values to obj already; the service writes from a fresh row.
        return services.category_update(category=Category.objects.get(pk=obj.pk), **values)


# Partners --------------------------------------------------------------------------------


@admin.register(Partner)
class PartnerAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Who fulfils rewards. Items point at partners, so a partner is deactivated, not deleted."""

    add_roles = change_roles = PROGRAM_ROLES

    list_display = ("name", "code", "is_active", "created_at", "tenant")
    list_filter = ("is_active", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("name", "code")
    ordering = ("tenant", "name")

    def get_fields(self, request, obj=None):
        fields = ("tenant", "code", "name", "is_active")
        return fields if obj is None else (*fields, "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("code", "created_at")


# Items -----------------------------------------------------------------------------------


class ImagePreviewInput(forms.ClearableFileInput):
    """The file input, with the current image shown above it."""

    def render(self, name, value, attrs=None, renderer=None):
        html = super().render(name, value, attrs, renderer)
        url = getattr(value, "url", None) if value else None
        if not url:
            return html
        preview = format_html('<img src="{}" alt="" class="catalog-image-preview" style="{}">', url, PREVIEW_STYLE)
        return preview + html


def _item_formfield(db_field, **kwargs):
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ItemForm(ServiceForm):
    names = NamesJsonField(
        label="Names per locale",
        help_text='Shown to members in these locales, e.g. {"ar": "سماعات", "he": "אוזניות"}.',
    )
    # The version the operator loaded: a save made on an older one is refused.
    loaded_version = forms.IntegerField(widget=forms.HiddenInput, required=False)
    field_aliases = {"minTier": "min_tier"}

    class Meta:
        model = Item
        fields = ("tenant", *services.ITEM_FIELDS, "image", "stock_quantity")
        formfield_callback = _item_formfield

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["loaded_version"].initial = self.instance.version
        if "stock_quantity" in self.fields:
            self.fields["stock_quantity"].label = "Opening stock"
            self.fields["stock_quantity"].help_text = "Empty: unlimited. Later changes are stock movements."
        if "min_tier" in self.fields:
            self._offer_tiers()

    def _tenant(self):
        if self.instance.tenant_id:
            return self.instance.tenant
        field = self.fields.get("tenant")
        if field is not None and field.initial:
            return Tenant.objects.filter(pk=field.initial).first()
        return None

    def _offer_tiers(self):
        tenant = self._tenant()
        ladder = contributions.tier_ladder(tenant) if tenant is not None else []
        if not ladder:
            return  # no tiers (or no tenant chosen yet): a free text field, checked by the service
        choices = [("", "Everyone"), *((tier, tier) for tier in ladder)]
        current = self.instance.min_tier
        if current and current not in ladder:
            choices.append((current, f"{current} (no longer a tier)"))
        self.fields["min_tier"] = forms.ChoiceField(
            label="Minimum tier",
            choices=choices,
            required=False,
            help_text="Only members at this tier or above see the item.",
        )

    def _get_validation_exclusions(self):
        # The service checks the sku (SkuAlreadyExists), so that a taken one is an error on the
        # field rather than the unique constraint's message about the whole form.
        return {*super()._get_validation_exclusions(), "sku"}

    def clean_image(self):
        image = self.cleaned_data.get("image")
        size = getattr(image, "size", None)
        # Only a new upload has a content type; the current file is not checked again.
        if image and getattr(image, "content_type", None) is not None and size is not None:
            limit = settings.CATALOG_IMAGE_MAX_BYTES
            if size > limit:
                raise ValidationError(
                    f"The image is {filesizeformat(size)}; the most is {filesizeformat(limit)}.", code="too_large"
                )
        return image


class InStockFilter(admin.SimpleListFilter):
    title = "in stock"
    parameter_name = "in_stock"

    def lookups(self, request, model_admin):
        return [("yes", "In stock (or unlimited)"), ("no", "Out of stock"), ("unlimited", "Unlimited")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "yes":
            return queryset.filter(Q(stock_quantity__isnull=True) | Q(stock_quantity__gt=0))
        if value == "no":
            return queryset.filter(stock_quantity=0)
        if value == "unlimited":
            return queryset.filter(stock_quantity__isnull=True)
        return queryset


class StockMovementForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[
            (StockMovement.Kind.RESTOCK, "Restock (add units)"),
            (StockMovement.Kind.ADJUST, "Adjust (a count, damage, loss: + or -)"),
        ],
        initial=StockMovement.Kind.RESTOCK,
    )
    quantity = forms.IntegerField(help_text="How many units; an adjustment that takes units out is negative.")
    reason = forms.CharField(max_length=500, required=False, widget=forms.TextInput(attrs={"size": 60}))


class StockTrackForm(forms.Form):
    quantity = forms.IntegerField(
        label="Start counting at", min_value=0, help_text="The units on hand now; the item stops being unlimited."
    )
    reason = forms.CharField(max_length=500, required=False, widget=forms.TextInput(attrs={"size": 60}))


@admin.register(Item)
class ItemAdmin(TenantExportMixin, ImportExportMixin, ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    export_file_prefix = "catalog"
    add_roles = change_roles = PROGRAM_ROLES
    form = ItemForm
    formfield_overrides = {
        models.ImageField: {"widget": ImagePreviewInput},
        models.URLField: {"assume_scheme": "https"},
    }
    change_form_template = "admin/catalog/item/change_form.html"

    list_display = (
        "thumbnail",
        "name",
        "sku",
        "kind",
        "category",
        "point_cost",
        "cash_value",
        "stock",
        "is_active",
        "is_in_offer_pool",
        "min_tier",
        "version",
        "tenant",
    )
    list_display_links = ("thumbnail", "name")
    list_filter = (
        "kind",
        ("category", admin.RelatedOnlyFieldListFilter),
        "is_active",
        "is_in_offer_pool",
        InStockFilter,
        "tenant",
    )
    list_select_related = ("category", "tenant")
    search_fields = ("name", "sku")
    search_help_text = "Name or sku."
    ordering = ("tenant", "name", "pk")
    actions = ("deactivate_selected",)

    # CSV import and export: the operator's tenant only (see catalog/resources.py).
    resource_classes = [ItemResource]
    import_formats = [CSV]
    export_formats = [CSV]
    import_template_name = "admin/catalog/item/import.html"

    # Columns -----------------------------------------------------------------------------

    @admin.display(description="image")
    def thumbnail(self, obj):
        src = _image_src(obj)
        if not src:
            return "—"
        return format_html('<img src="{}" alt="" style="{}">', src, THUMBNAIL_STYLE)

    @admin.display(description="stock", ordering="stock_quantity")
    def stock(self, obj):
        return "unlimited" if obj.stock_quantity is None else obj.stock_quantity

    @admin.display(description="image")
    def image_preview(self, obj):
        src = _image_src(obj)
        if not src:
            return "—"
        return format_html('<img src="{}" alt="" class="catalog-image-preview" style="{}">', src, PREVIEW_STYLE)

    @admin.display(description="recent stock movements")
    def recent_stock_movements(self, obj):
        movements = list(
            StockMovement.objects.filter(tenant_id=obj.tenant_id, item=obj).order_by("-created_at", "-pk")[
                :RECENT_MOVEMENTS
            ]
        )
        if not movements:
            return "None yet."
        rows = format_html_join(
            "",
            '<tr class="stock-movement-row"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    m.created_at.strftime("%Y-%m-%d %H:%M"),
                    m.get_kind_display(),
                    f"{m.quantity:+d}",
                    m.stock_after,
                    m.reason or (f"{m.reference_type} {m.reference_id}".strip()),
                    m.actor,
                )
                for m in movements
            ),
        )
        head = mark_safe(
            "<thead><tr><th>when</th><th>kind</th><th>change</th><th>stock after</th>"
            "<th>reason</th><th>by</th></tr></thead>"
        )
        link = reverse(f"{self.admin_site.name}:catalog_stockmovement_changelist")
        more = format_html('<p><a href="{}?q={}">All movements of this item</a></p>', link, obj.sku or obj.name)
        return format_html('<table class="stock-movements">{}<tbody>{}</tbody></table>{}', head, rows, more)

    # Form --------------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        editable = obj is None or self.has_change_permission(request, obj)
        head = ("tenant", "sku", "name", "names", "description", "kind", "category", "partner")
        if obj is not None and editable:
            head = (*head, "loaded_version")
        availability = ("is_active", "is_in_offer_pool", "min_tier")
        availability = (*availability, "stock_quantity") if obj is None else (*availability, "stock")
        fieldsets = [
            (None, {"fields": head}),
            ("Price", {"fields": ("point_cost", "cash_value")}),
            ("Availability", {"fields": availability}),
            (
                "Image",
                {
                    "fields": ("image", "image_url") if editable else ("image_preview", "image_url"),
                    "description": f"PNG, JPEG, GIF or WebP up to {filesizeformat(settings.CATALOG_IMAGE_MAX_BYTES)}.",
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("Stock movements", {"fields": ("recent_stock_movements",)}))
            fieldsets.append(("Record", {"fields": ("version", "created_at", "updated_at"), "classes": ("collapse",)}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("stock", "image_preview", "recent_stock_movements", "version", "created_at", "updated_at")

    def service_write(self, request, obj, form):
        data = form.cleaned_data
        values = {name: data[name] for name in services.ITEM_FIELDS if name in data}
        # Codes, so that the service resolves them in the item's tenant.
        values["category"] = data["category"].code if data.get("category") else None
        values["partner"] = data["partner"].code if data.get("partner") else None
        if obj is None:
            item = services.item_create(
                tenant=self.form_tenant(request, obj, form),
                actor=_operator_label(request),
                stock_quantity=data.get("stock_quantity"),
                **values,
            )
        else:
            item = self._item_update(obj, form, values)
        if "image" in form.changed_data:
            # Not one of the service's fields: the file is stored once the edit is accepted.
            item.image = data["image"] or ""
            item.save(update_fields=["image"])
        return item

    def _item_update(self, obj, form, values):
        loaded = form.cleaned_data.get("loaded_version")
        current = Item.objects.select_related("tenant").get(pk=obj.pk)
        if loaded is None:
            raise ValidationError("This form does not say which version it edits: reload the page and try again.")
        changed = set(form.changed_data) - {"loaded_version"}
        if not changed:
            if current.version != loaded:
                raise self._stale(current)
            return current
        # Only what the operator changed: an untouched field is not checked again.
        fields = {name: value for name, value in values.items() if name in changed}
        try:
            item = services.item_update(item=current, expected_version=loaded, fields=fields)
        except StaleVersion:
            raise self._stale(Item.objects.get(pk=obj.pk)) from None
        return item  # the service has recorded the change in the audit log

    @staticmethod
    def _stale(current: Item) -> ValidationError:
        return ValidationError(
            f"Someone else saved this item since you opened it (it is now at version {current.version}); "
            "nothing was changed. Reload the page to see their changes, then make yours again.",
            code="stale_version",
        )

    # Actions -----------------------------------------------------------------------------

    @admin.action(description="Deactivate selected items", permissions=["change"])
    def deactivate_selected(self, request, queryset):
        count = 0
        for item in queryset.filter(is_active=True):
            services.item_deactivate(item=item)  # which records the change in the audit log
            self.log_change(request, item, "Deactivated.")
            count += 1
        self.message_user(request, f"{count} item(s) deactivated.", messages.SUCCESS)

    # Import and export -------------------------------------------------------------------

    def has_import_permission(self, request):
        # An import writes into one tenant: the operator's. Platform staff have none.
        return self.request_tenant(request) is not None and self.role_allows(request, PROGRAM_ROLES)

    def has_export_permission(self, request):
        return self.request_tenant(request) is not None and self.has_view_permission(request)

    def get_import_resource_kwargs(self, request, **kwargs):
        return {"tenant": self.request_tenant(request), "actor": _operator_label(request)}

    # Stock -------------------------------------------------------------------------------

    def has_stock_permission(self, request, obj=None) -> bool:
        return self.role_allows(request, PROGRAM_ROLES) and self.in_scope(request, obj)

    def get_urls(self):
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "<path:object_id>/stock/",
                self.admin_site.admin_view(self.stock_view),
                name="{}_{}_stock".format(*info),
            )
        ]
        # Before the defaults, whose "<object_id>/" catch-all would swallow this path.
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        item = self.get_object(request, unquote(object_id))
        extra_context = {**(extra_context or {}), "can_record_stock": self.has_stock_permission(request, item)}
        return super().change_view(request, object_id, form_url, extra_context)

    def stock_view(self, request, object_id):
        item = self.get_object(request, unquote(object_id))
        if not self.has_stock_permission(request, item):
            raise PermissionDenied
        tracked = item.stock_quantity is not None
        form_class = StockMovementForm if tracked else StockTrackForm
        form = form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                message = self._stock_write(request, item, form.cleaned_data, tracked)
            except DomainError as exc:
                form.add_error("quantity" if exc.field in (None, "quantity") else None, exc.message)
            except ValidationError as exc:
                self._form_errors(form, exc)
            else:
                after = Item.objects.values_list("stock_quantity", flat=True).get(pk=item.pk)
                self.log_operation(request, item, message, changes={"stock": (item.stock_quantity, after)})
                self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(_change_url(self.admin_site, item))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Record stock movement: {item}",
            "opts": self.opts,
            "original": item,
            "form": form,
            "tracked": tracked,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/catalog/item/stock.html", context)

    def _stock_write(self, request, item, data, tracked) -> str:
        actor = _operator_label(request)
        if not tracked:
            item = services.stock_track(
                tenant=item.tenant, item=item, quantity=data["quantity"], reason=data["reason"], actor=actor
            )
            return f"Stock now counted: {item.stock_quantity}."
        change = services.stock_record(
            tenant=item.tenant,
            item=item,
            kind=data["kind"],
            quantity=data["quantity"],
            reason=data["reason"],
            actor=actor,
        )
        return f"{StockMovement.Kind(data['kind']).label}: {data['quantity']:+d}; stock is now {change.stock_after}."

    @staticmethod
    def _form_errors(form, exc: ValidationError) -> None:
        if not hasattr(exc, "error_dict"):
            form.add_error(None, exc)
            return
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, [m for e in errors for m in e.messages])


# Stock movements (read-only) -------------------------------------------------------------


@admin.register(StockMovement)
class StockMovementAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "item", "kind", "quantity", "stock_after", "reason", "reference", "actor", "tenant")
    list_filter = ("kind", "tenant")
    list_select_related = ("item", "tenant")
    search_fields = ("item__name", "item__sku")
    search_help_text = "Item name or sku."
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    show_full_result_count = False
    readonly_fields = [f.name for f in StockMovement._meta.fields]

    @admin.display(description="reference")
    def reference(self, obj):
        return f"{obj.reference_type} {obj.reference_id}".strip() or "—"
