"""CSV import and export of a tenant's members (django-import-export), keyed by memberRef.

The tenant is the admin's to give (the operator's own, or the one platform staff chose); a
file never names it, so a memberRef is looked up in that tenant only and another tenant's
member with the same memberRef is never touched. New members are made by
`rewards.services.member_create` (their points account and default tier with them) and
existing ones changed by `member_update`, as the API does. Each row is checked before
anything is written, a memberRef twice in one file is an error on both rows after the first,
and one bad row writes nothing (the admin imports in one transaction and rolls it back).
"""

import json

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from import_export import fields, resources, widgets

from core.audit.records import audit_action
from core.exceptions import DomainError
from rewards import contributions, services
from rewards.models import Account, Member

# The model's names for what the file calls a column (errors name the column).
COLUMNS = {"external_ref": "memberRef", "locale": "locale", "status": "status", "attributes": "attributes"}


def _column_errors(exc: ValidationError) -> ValidationError:
    if not hasattr(exc, "error_dict"):
        return ValidationError({NON_FIELD_ERRORS: exc.messages})
    return ValidationError(
        {COLUMNS.get(name, name): [m for e in errors for m in e.messages] for name, errors in exc.error_dict.items()}
    )


class StatusWidget(widgets.CharWidget):
    """ACTIVE, SUSPENDED or CLOSED, in any case."""

    def clean(self, value, row=None, **kwargs):
        value = (super().clean(value, row, **kwargs) or "").strip().upper()
        if value and value not in Member.Status.values:
            raise ValueError(f"Give one of {', '.join(Member.Status.values)}, not {value!r}.")
        return value


class AttributesWidget(widgets.JSONWidget):
    """A JSON object ({"city": "Haifa"}), written in its own scripts."""

    def clean(self, value, row=None, **kwargs):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            parsed = super().clean(value, row, **kwargs)
        except ValueError:
            raise ValueError('Give a JSON object, e.g. {"city": "Haifa"}.') from None
        if not isinstance(parsed, dict):
            raise ValueError('Give a JSON object, e.g. {"city": "Haifa"}.')
        return parsed

    def render(self, value, obj=None, **kwargs):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""


class MemberResource(resources.ModelResource):
    member_ref = fields.Field(attribute="external_ref", column_name="memberRef", widget=widgets.CharWidget())
    locale = fields.Field(attribute="locale", column_name="locale", widget=widgets.CharWidget())
    status = fields.Field(attribute="status", column_name="status", widget=StatusWidget())
    attributes = fields.Field(attribute="attributes", column_name="attributes", widget=AttributesWidget())
    # Exported only: the tier is kept by `tiers`, the balance moves only by ledger transfers.
    tier = fields.Field(column_name="tier", readonly=True)
    balance = fields.Field(attribute="points_balance", column_name="balance", readonly=True)
    created = fields.Field(
        attribute="created_at", column_name="created", readonly=True, widget=widgets.DateTimeWidget()
    )

    class Meta:
        model = Member
        fields = ("member_ref", "locale", "status", "attributes", "tier", "balance", "created")
        import_id_fields = ("member_ref",)
        skip_unchanged = True
        report_skipped = True
        use_transactions = True

    def __init__(self, tenant=None, **kwargs):
        super().__init__(**kwargs)
        self.tenant = tenant
        self._rows_by_ref: dict[str, int] = {}
        self._tiers: dict = {}

    # Rows of the tenant only -------------------------------------------------------------

    def get_queryset(self):
        if self.tenant is None:
            return Member.objects.none()
        return Member.objects.filter(tenant=self.tenant)

    def filter_export(self, queryset, **kwargs):
        # Whatever queryset the admin hands over (its filters applied), only this tenant's leave.
        if self.tenant is None:
            return queryset.none()
        points = Account.objects.filter(member=OuterRef("pk"), kind=Account.Kind.MEMBER).values("balance")[:1]
        queryset = (
            queryset.filter(tenant=self.tenant)
            .annotate(points_balance=Coalesce(Subquery(points), Value(0)))
            .order_by("external_ref", "pk")
        )
        members = list(queryset)
        self._tiers = {pk: context.code for pk, context in contributions.tiers_for(self.tenant, members).items()}
        return members

    def dehydrate_tier(self, member) -> str:
        return self._tiers.get(member.pk, "")

    def init_instance(self, row=None):
        return Member(tenant=self.tenant)

    # Import ------------------------------------------------------------------------------

    def before_import(self, dataset, **kwargs):
        if self.tenant is None:
            raise ValidationError("Members are imported into one tenant: choose it.")
        if "memberRef" not in (dataset.headers or []):
            raise ValidationError("The file needs a memberRef column: it is how the import finds each member.")
        self._rows_by_ref = {}

    def before_import_row(self, row, row_number=None, **kwargs):
        ref = row.get("memberRef")
        ref = ref.strip() if isinstance(ref, str) else ("" if ref is None else str(ref).strip())
        if not ref:
            raise ValidationError({"memberRef": ["Every row needs a memberRef."]})
        row["memberRef"] = ref
        first = self._rows_by_ref.setdefault(ref, row_number)
        if first != row_number:
            raise ValidationError({"memberRef": [f"memberRef {ref!r} is also on row {first}: give each member once."]})

    def import_field(self, field, instance, row, is_m2m=False, **kwargs):
        value = row.get(field.column_name)
        blank = value is None or (isinstance(value, str) and not value.strip())
        if blank and field.attribute in ("status", "attributes", "locale") and not instance._state.adding:
            return  # a blank cell leaves an existing member's value as it is
        super().import_field(field, instance, row, is_m2m, **kwargs)

    def import_instance(self, instance, row, **kwargs):
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            raise _column_errors(exc) from None

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        # The services check the row (full_clean) when they write it; here only what the
        # widgets found, named by column.
        if import_validation_errors:
            raise ValidationError(import_validation_errors)

    def save_instance(self, instance, is_create, row, **kwargs):
        try:
            if is_create:
                saved = services.member_create(
                    tenant=self.tenant,
                    external_ref=instance.external_ref,
                    locale=instance.locale or "",
                    attributes=instance.attributes or {},
                    status=instance.status or "",
                )
                instance.pk = saved.pk
                instance.created_at = saved.created_at
                instance._state.adding = False
            else:
                services.member_update(
                    member=instance, locale=instance.locale, status=instance.status, attributes=instance.attributes
                )
        except ValidationError as exc:
            raise _column_errors(exc) from exc
        except DomainError as exc:
            raise ValidationError({COLUMNS.get(exc.field or "", exc.field or NON_FIELD_ERRORS): [exc.message]}) from exc

    def after_import(self, dataset, result, **kwargs):
        if kwargs.get("dry_run") or result.has_errors() or result.has_validation_errors():
            return
        totals = result.totals
        # In the import's transaction: the entry is there exactly when the members are.
        audit_action(
            obj=self.tenant,
            action="Members imported",
            created=totals.get("new", 0),
            updated=totals.get("update", 0),
            unchanged=totals.get("skip", 0),
            file=kwargs.get("file_name") or "",
        )
