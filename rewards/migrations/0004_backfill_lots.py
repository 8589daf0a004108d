"""Points credited before lots existed become one lot per member (no expiry), so that the
remaining points of a member's lots add up to the balance."""

from django.db import migrations
from django.db.models import Max


def backfill(apps, schema_editor):
    Account = apps.get_model("rewards", "Account")
    Transfer = apps.get_model("rewards", "Transfer")
    EarnedLot = apps.get_model("rewards", "EarnedLot")
    for account in Account.objects.filter(kind="MEMBER", balance__gt=0).iterator():
        last = Transfer.objects.filter(credit_account=account).aggregate(m=Max("created_at"))["m"]
        transfer = Transfer.objects.filter(credit_account=account, created_at=last).first()
        if transfer is None or EarnedLot.objects.filter(transfer=transfer).exists():
            continue
        EarnedLot.objects.create(
            tenant_id=account.tenant_id,
            member_id=account.member_id,
            transfer=transfer,
            points=account.balance,
            remaining=account.balance,
        )


class Migration(migrations.Migration):
    dependencies = [("rewards", "0003_earning_engine")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
