"""Demo data: a tenant, back-office logins and members with history. Safe to run again."""

import random
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from rewards.credit import credit_package_create
from rewards.models import CreditPackage, Member
from rewards.services import member_create, points_adjust
from tenants.models import Operator, Tenant
from tenants.services import api_key_create, api_key_revoke, tenant_create

DEMO_SLUG = "demo"
ADMIN_LOGIN = ("admin", "admin")
# Operators of the demo tenant, one per role: (username, password, role).
OPERATOR_LOGINS = [
    ("demo", "demo", Operator.Role.OWNER),
    ("manager", "manager", Operator.Role.MANAGER),
    ("support", "support", Operator.Role.SUPPORT),
    ("viewer", "viewer", Operator.Role.VIEWER),
]
REASONS_CREDIT = ["Welcome bonus", "Goodwill credit", "Store visit", "Birthday treat", "Survey reward"]
REASONS_DEBIT = ["Free coffee", "Correction", "Voucher redeemed", "Merch discount"]
# Credit packages members can buy (pay with the sandbox gateway's token tok_approve).
CREDIT_PACKAGES = [
    ("coffee-500", "500 points", "Enough for a free coffee.", Decimal("4.99"), 500, 1),
    ("coffee-1200", "1,200 points", "Best value: 20% extra.", Decimal("9.99"), 1200, 2),
]


class Command(BaseCommand):
    help = "Create the demo tenant, an operator login per role and a platform admin login, and members with history."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=40, help="How many demo members (default 40).")

    def handle(self, *args, members: int, **options):
        rng = random.Random(42)  # noqa: S311 - demo data, the same every run
        tenant, raw_key = self._tenant()
        self._users(tenant)
        self._credit_packages(tenant)
        existing = set(Member.objects.filter(tenant=tenant).values_list("external_ref", flat=True))
        created = 0
        for n in range(1, members + 1):
            ref = f"demo-{n:04d}"
            if ref not in existing:
                self._member_with_history(tenant, ref, rng)
                created += 1
            if n % 10 == 0 or n == members:
                self.stdout.write(f"  members {n}/{members}", ending="\r")
                self.stdout.flush()
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo tenant '{tenant.name}' ready ({created} new members)."))
        for username, password, role in OPERATOR_LOGINS:
            label = f"Back office ({role.lower()}):"
            self.stdout.write(f"  {label:<26}{username} / {password}")
        self.stdout.write(f"  Back office (platform):   {ADMIN_LOGIN[0]} / {ADMIN_LOGIN[1]}")
        self.stdout.write(f"  Tenant id:                {tenant.pk}")
        self.stdout.write(f"  API key (X-API-Key):      {raw_key}")

    def _tenant(self) -> tuple[Tenant, str]:
        """The demo tenant, and a fresh demo API key: keys are shown only once, so each run
        revokes the previous demo key and prints a new one."""
        tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
        if tenant is None:
            tenant, _ = tenant_create(name="Demo Coffee Co.", slug=DEMO_SLUG, currency="USD", timezone="UTC")
        for old in tenant.api_keys.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=old)
        return tenant, api_key_create(tenant=tenant, name="demo").raw

    def _users(self, tenant: Tenant) -> None:
        users = get_user_model()
        if not users.objects.filter(username=ADMIN_LOGIN[0]).exists():
            users.objects.create_superuser(ADMIN_LOGIN[0], "admin@example.com", ADMIN_LOGIN[1])
        for username, password, role in OPERATOR_LOGINS:
            operator_user = users.objects.filter(username=username).first()
            if operator_user is None:
                operator_user = users.objects.create_user(username, f"{username}@example.com", password, is_staff=True)
            Operator.objects.get_or_create(user=operator_user, defaults={"tenant": tenant, "role": role})

    def _credit_packages(self, tenant: Tenant) -> None:
        existing = set(CreditPackage.objects.filter(tenant=tenant).values_list("code", flat=True))
        for code, name, description, price, points, order in CREDIT_PACKAGES:
            if code not in existing:
                credit_package_create(
                    tenant=tenant,
                    code=code,
                    name=name,
                    description=description,
                    price=price,
                    reward_points=points,
                    sort_order=order,
                )

    @transaction.atomic
    def _member_with_history(self, tenant: Tenant, ref: str, rng: random.Random) -> None:
        member = member_create(
            tenant=tenant,
            external_ref=ref,
            locale=rng.choice(["en", "en", "fr", "ar"]),
            attributes={
                "segment": rng.choice(["student", "commuter", "family"]),
                "city": rng.choice(["Paris", "Cairo", "Austin"]),
            },
        )
        balance = 0
        for i in range(rng.randint(2, 8)):
            if balance >= 50 and rng.random() < 0.3:
                points = -rng.randint(10, balance)
                reason = rng.choice(REASONS_DEBIT)
            else:
                points = rng.choice([25, 50, 100, 150, 250])
                reason = rng.choice(REASONS_CREDIT)
            points_adjust(
                tenant=tenant,
                member=member,
                points=points,
                reason=reason,
                actor="seed",
                idempotency_key=f"seed:{ref}:{i}",
            )
            balance += points
