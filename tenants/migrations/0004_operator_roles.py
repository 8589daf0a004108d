"""Operator roles become owner, manager, support and viewer: every ADMIN is now an OWNER.

Going back, an owner is an ADMIN again and a manager becomes SUPPORT, the old role that could
change the program but not the tenant's operators, keys and webhooks.
"""

from django.db import migrations, models


def admins_become_owners(apps, schema_editor):
    Operator = apps.get_model("tenants", "Operator")
    Operator.objects.filter(role="ADMIN").update(role="OWNER")


def owners_become_admins(apps, schema_editor):
    Operator = apps.get_model("tenants", "Operator")
    Operator.objects.filter(role="OWNER").update(role="ADMIN")
    Operator.objects.filter(role="MANAGER").update(role="SUPPORT")


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_webhooks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="operator",
            name="role",
            field=models.CharField(
                choices=[
                    ("OWNER", "Owner: everything, including operators, API keys and webhooks"),
                    (
                        "MANAGER",
                        "Manager: the program: campaigns, cohorts, tiers, catalog, categories, partners, members",
                    ),
                    (
                        "SUPPORT",
                        "Support: members, point adjustments, redemption retries and refunds, dead-letter replays",
                    ),
                    ("VIEWER", "Read-only"),
                ],
                default="VIEWER",
                max_length=16,
            ),
        ),
        migrations.RunPython(admins_become_owners, owners_become_admins, elidable=True),
    ]
