"""The points ledger through the rewards services: balances, idempotency, immutability and the
invariants that `ledger_verify` checks."""

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from rewards import selectors, services
from rewards.exceptions import IdempotencyKeyConflict, InsufficientPoints, InvalidAmount, MemberInactive
from rewards.models import Account, Member, Transfer
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def adjust(tenant, member, points: int, **kwargs):
    return services.points_adjust(tenant=tenant, member=member, points=points, reason="test", actor="test", **kwargs)


def balance(member) -> int:
    return selectors.member_balance(member=member)


def test_credit_then_debit_moves_the_balance_and_keeps_the_ledger_balanced(tenant, member):
    adjust(tenant, member, 150)

    result = adjust(tenant, member, -40)

    assert result.created
    assert result.transfer.amount == 40
    assert result.transfer.debit_balance_after == 110
    assert balance(member) == 110
    report = selectors.ledger_verify(tenant=tenant)
    assert report.ok, report
    assert report.balances_sum == 0


def test_system_account_balance_is_derived_from_transfers(tenant, member):
    adjust(tenant, member, 70)
    adjust(tenant, member, -20)

    system = Account.objects.get(tenant=tenant, member__isnull=True, kind=Account.Kind.ADJUSTMENT)

    assert system.balance is None
    assert selectors.account_balance(account=system) == -50


def test_debit_beyond_the_balance_is_refused_and_writes_nothing(tenant, member):
    adjust(tenant, member, 30)

    with pytest.raises(InsufficientPoints):
        adjust(tenant, member, -31)

    assert balance(member) == 30
    assert Transfer.objects.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize("points", [0, True, 1.5, "10", None])
def test_adjustment_must_be_a_non_zero_whole_number(tenant, member, points):
    with pytest.raises(InvalidAmount):
        adjust(tenant, member, points)

    assert Transfer.objects.filter(tenant=tenant).count() == 0


def test_closed_member_cannot_be_adjusted(tenant, member):
    services.member_update(member=member, status=Member.Status.CLOSED)

    with pytest.raises(MemberInactive):
        adjust(tenant, member, 10)

    assert Transfer.objects.filter(tenant=tenant).count() == 0


def test_same_idempotency_key_and_same_amount_posts_once(tenant, member):
    first = adjust(tenant, member, 25, idempotency_key="order-1")
    second = adjust(tenant, member, 25, idempotency_key="order-1")

    assert first.created
    assert not second.created
    assert second.transfer.pk == first.transfer.pk
    assert balance(member) == 25
    assert Transfer.objects.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize("second_points", [26, -25])
def test_same_idempotency_key_for_another_transfer_conflicts(tenant, member, second_points):
    adjust(tenant, member, 25, idempotency_key="order-1")

    with pytest.raises(IdempotencyKeyConflict):
        adjust(tenant, member, second_points, idempotency_key="order-1")

    assert balance(member) == 25
    assert Transfer.objects.filter(tenant=tenant).count() == 1


def test_a_transfer_the_caller_knows_is_new_opens_no_savepoint_and_a_clash_undoes_it_with_the_callers(tenant, member):
    # The earning engine's transfer (known_new: its inbox row says no transfer has the key) runs
    # inside the engine's own savepoint; a clash of keys, should one ever happen, is not looked
    # past but rolled back whole with that savepoint.
    from django.test.utils import CaptureQueriesContext

    from rewards.ledger import points_transfer, system_account_get

    issuance = system_account_get(tenant=tenant, kind=Account.Kind.ISSUANCE)
    account = Account.objects.get(member=member, kind=Account.Kind.MEMBER)

    def earn(points: int, key: str):
        return points_transfer(
            tenant=tenant, debit=issuance, credit=account, amount=points, kind=Transfer.Kind.EARN,
            idempotency_key=key, known_new=True,
        )  # fmt: skip

    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        earn(5, "event:e-1")
    opened = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SAVEPOINT")]
    assert len(opened) == 1, opened  # the caller's alone

    with pytest.raises(IntegrityError), transaction.atomic():
        earn(7, "event:e-1")

    assert balance(member) == 5  # the clash's balance move went with the caller's savepoint
    assert list(Transfer.objects.filter(tenant=tenant).values_list("amount", flat=True)) == [5]
    assert selectors.ledger_verify(tenant=tenant).ok


def test_idempotency_keys_are_per_tenant(tenant, other_tenant, member):
    other_member = MemberFactory(tenant=other_tenant)

    mine = adjust(tenant, member, 10, idempotency_key="shared")
    theirs = adjust(other_tenant, other_member, 10, idempotency_key="shared")

    assert mine.created
    assert theirs.created
    assert mine.transfer.pk != theirs.transfer.pk
    assert balance(member) == 10
    assert balance(other_member) == 10


def test_member_balance_can_never_be_negative_in_the_database(member):
    account = Account.objects.get(member=member)

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE rewards_account SET balance = -1 WHERE id = %s", [account.pk])

    account.refresh_from_db()
    assert account.balance == 0


@pytest.fixture
def transfer(tenant, member):
    return adjust(tenant, member, 40).transfer


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE rewards_transfer SET amount = amount + 1 WHERE id = %s",
        "DELETE FROM rewards_transfer WHERE id = %s",
    ],
)
def test_transfers_cannot_be_changed_with_raw_sql(transfer, sql):
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [transfer.pk])

    assert Transfer.objects.filter(pk=transfer.pk, amount=40).exists()


def test_transfers_cannot_be_changed_through_querysets(transfer):
    with pytest.raises(DatabaseError), transaction.atomic():
        Transfer.objects.filter(pk=transfer.pk).update(amount=1)
    with pytest.raises(DatabaseError), transaction.atomic():
        Transfer.objects.filter(pk=transfer.pk).delete()

    assert Transfer.objects.filter(pk=transfer.pk, amount=40).exists()


def test_transfer_model_refuses_to_save_or_delete_an_existing_row(transfer):
    transfer.amount = 999

    with pytest.raises(TypeError):
        transfer.save()
    with pytest.raises(TypeError):
        transfer.delete()

    transfer.refresh_from_db()
    assert transfer.amount == 40


def test_ledger_verify_reports_a_balance_that_does_not_match_its_transfers(tenant, member):
    # given a member whose balance column was moved without a transfer
    adjust(tenant, member, 10)
    Account.objects.filter(member=member).update(balance=15)

    # when the ledger is verified
    report = selectors.ledger_verify(tenant=tenant)

    # then both invariants are reported broken
    assert not report.ok
    assert report.member_mismatches == [(member.external_ref, 15, 10)]
    assert report.balances_sum == 5
