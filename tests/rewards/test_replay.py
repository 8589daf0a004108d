"""`manage.py replay_events` and `manage.py simulate`: events in bulk through the engine."""

import io
import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from campaigns.services import action_upsert
from rewards.categories import category_create
from rewards.models import InboundEvent
from rewards.selectors import ledger_verify, member_get
from tests.factories import MemberFactory, TenantFactory

pytestmark = pytest.mark.django_db

UNTIL = date(2031, 3, 14)


def run(command: str, *args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def purchase(n: int, member_ref: str, amount: str = "12.50", **extra) -> dict:
    return {
        "eventId": f"order-{n}",
        "type": "transaction.created",
        "memberRef": member_ref,
        "amount": amount,
        "currency": "USD",
        "occurredAt": "2031-03-01T10:00:00Z",
        **extra,
    }


def write_jsonl(path, lines) -> str:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


def summary_of(out: str) -> dict:
    """The counts of the summary line: `21 events in 0.3 s: 21 applied, 0 duplicate, ...`."""
    last = out.strip().splitlines()[-1]
    found = re.findall(r"(\d+) (events in|applied|duplicate|rejected|invalid)\b", last)
    return {word.split()[0]: int(n) for n, word in found}


@pytest.fixture
def shop(db):
    tenant = TenantFactory(slug="shop")
    members = [MemberFactory(tenant=tenant, external_ref=f"m-{i}") for i in range(4)]
    return tenant, members


def test_a_replay_applies_every_event_and_the_ledger_adds_up(shop, tmp_path):
    # given 20 purchases by four members, and a refund of one of them
    tenant, members = shop
    events = [purchase(n, members[n % 4].external_ref, amount=f"{10 + n}.25") for n in range(20)]
    events.append({"eventId": "refund-3", "type": "transaction.refunded", "originalEventId": "order-3"})
    path = write_jsonl(tmp_path / "events.jsonl", events)

    # when they are replayed in batches of 8
    out, err = run("replay_events", path, tenant="shop", batch_size=8)

    # then all 21 are applied, and each member's balance is what their events earned
    assert summary_of(out) == {"events": 21, "applied": 21, "duplicate": 0, "rejected": 0, "invalid": 0}
    assert err == ""
    assert InboundEvent.objects.filter(tenant=tenant, status=InboundEvent.Status.APPLIED).count() == 21
    assert ledger_verify(tenant=tenant).ok
    for member in members:
        earned = InboundEvent.objects.filter(tenant=tenant, member_ref=member.external_ref).aggregate(s=Sum("points"))
        assert member_get(tenant=tenant, external_ref=member.external_ref).balance == earned["s"] > 0
    # and the progress was shown batch by batch, with the rate
    assert "\r  events 8/21" in out and "\r  events 16/21" in out and "\r  events 21/21" in out
    assert "events/s" in out.splitlines()[-1]


def test_a_second_replay_applies_nothing_and_reports_duplicates(shop, tmp_path):
    tenant, members = shop
    path = write_jsonl(tmp_path / "events.jsonl", [purchase(n, members[0].external_ref) for n in range(10)])
    run("replay_events", path, tenant="shop")
    balance = member_get(tenant=tenant, external_ref=members[0].external_ref).balance

    out, _ = run("replay_events", path, tenant="shop")

    assert summary_of(out) == {"events": 10, "applied": 0, "duplicate": 10, "rejected": 0, "invalid": 0}
    assert member_get(tenant=tenant, external_ref=members[0].external_ref).balance == balance
    assert ledger_verify(tenant=tenant).ok


def test_bad_lines_are_counted_with_their_line_numbers_and_the_rest_is_applied(shop, tmp_path):
    tenant, members = shop
    ref = members[0].external_ref
    lines = [
        purchase(1, ref),  # line 1
        "{not json",  # line 2
        "",  # line 3: blank, skipped
        purchase(2, ref, amount="-5"),  # line 4: invalid amount
        purchase(3, ref, currency="EUR"),  # line 5: refused by the engine
        "[1, 2]",  # line 6: not an object
        {"eventId": "x", "type": "coupon.redeemed"},  # line 7: unknown type
        {"eventId": "r-1", "type": "transaction.refunded", "originalEventId": "nope"},  # line 8: refused
        purchase(4, ref),  # line 9
        {**purchase(1, ref), "amount": "99.00"},  # line 10: eventId reused with another body
    ]
    path = write_jsonl(tmp_path / "events.jsonl", lines)

    out, err = run("replay_events", path, tenant="shop", batch_size=3)

    assert summary_of(out) == {"events": 9, "applied": 2, "duplicate": 0, "rejected": 3, "invalid": 4}
    problems = err.splitlines()
    assert [line.split(":")[0] for line in problems] == [
        "line 2",
        "line 4",
        "line 5",
        "line 6",
        "line 7",
        "line 8",
        "line 10",
    ]
    assert problems[0].startswith("line 2: invalid: JSON parse error")
    assert problems[1].startswith("line 4: invalid: amount:")
    assert "(currency_mismatch)" in problems[2] and problems[2].startswith("line 5: rejected: currency:")
    assert problems[4].startswith("line 7: invalid: type:")
    assert "(unknown_original_event)" in problems[5]
    assert "(event_id_reused)" in problems[6]
    assert set(InboundEvent.objects.filter(tenant=tenant, status="APPLIED").values_list("event_id", flat=True)) == {
        "order-1",
        "order-4",
    }
    assert ledger_verify(tenant=tenant).ok


def test_a_replay_reads_stdin(shop, monkeypatch):
    _, members = shop
    body = "".join(json.dumps(purchase(n, members[1].external_ref)) + "\n" for n in range(3))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(body.encode())))

    out, _ = run("replay_events", "-", tenant="shop")

    assert "\r  events 3 " in out  # no total: stdin is read as it comes
    assert summary_of(out)["applied"] == 3


def test_the_tenant_must_exist(db, tmp_path):
    path = write_jsonl(tmp_path / "events.jsonl", [])
    with pytest.raises(CommandError, match=r"No tenant with slug 'demo'.*seed_demo"):
        run("replay_events", path)
    with pytest.raises(CommandError, match=r"No tenant with slug 'demo'.*seed_demo"):
        run("simulate", events=10)
    with pytest.raises(CommandError, match="Cannot read"):
        TenantFactory(slug="demo")
        run("replay_events", str(tmp_path / "missing.jsonl"))


def test_simulate_with_a_seed_writes_the_same_file_twice(shop, tmp_path):
    tenant, _ = shop
    category_create(tenant=tenant, code="dining", name="Dining", mcc_codes=["5812", "5814"])
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"

    run("simulate", events=300, tenant="shop", seed=7, out=str(first), until=UNTIL, action_codes=["app.login"])
    run("simulate", events=300, tenant="shop", seed=7, out=str(second), until=UNTIL, action_codes=["app.login"])
    run("simulate", events=300, tenant="shop", seed=8, out=str(other), until=UNTIL, action_codes=["app.login"])

    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    events = [json.loads(line) for line in first.read_text().splitlines()]
    assert len(events) == 300
    assert len({e["eventId"] for e in events}) == 300
    kinds = Counter(e["type"] for e in events)
    assert kinds["transaction.created"] > 200 and kinds["action"] == 30 and kinds["transaction.refunded"] == 9
    assert not InboundEvent.objects.exists()  # --out writes, it does not ingest
    purchases = [e for e in events if e["type"] == "transaction.created"]
    assert {e["currency"] for e in purchases} == {"USD"}
    assert {e["mcc"] for e in purchases if "mcc" in e} == {"5812", "5814"}
    assert {e["memberRef"] for e in events} <= {"m-0", "m-1", "m-2", "m-3"}
    amounts = sorted(float(e["amount"]) for e in purchases)
    assert 10 < amounts[len(amounts) // 2] < 60  # a typical basket
    # spread over the 30 days before --until, in the order they occurred
    moments = [datetime.fromisoformat(e["occurredAt"]) for e in events]
    assert moments == sorted(moments)
    end = datetime(2031, 3, 14, tzinfo=UTC)
    assert end - timedelta(days=30) <= moments[0] and moments[-1] < end
    assert len({m.date() for m in moments}) > 20
    # a refund comes after the purchase it refunds
    position = {e["eventId"]: i for i, e in enumerate(events)}
    for refund in (e for e in events if e["type"] == "transaction.refunded"):
        assert position[refund["originalEventId"]] < position[refund["eventId"]]


def test_simulate_limits_the_members_taking_part(shop, tmp_path):
    out = tmp_path / "events.jsonl"

    run("simulate", events=50, tenant="shop", members=2, seed=1, out=str(out), until=UNTIL)

    assert len({json.loads(line)["memberRef"] for line in out.read_text().splitlines()}) == 2


def test_what_simulate_writes_replays_in_full(shop, tmp_path):
    tenant, _ = shop
    path = tmp_path / "events.jsonl"
    run("simulate", events=120, tenant="shop", seed=3, out=str(path), until=UNTIL, action_codes=["app.login"])

    out, err = run("replay_events", str(path), tenant="shop", batch_size=50)

    assert summary_of(out) == {"events": 120, "applied": 120, "duplicate": 0, "rejected": 0, "invalid": 0}
    assert err == ""
    assert ledger_verify(tenant=tenant).ok
    assert InboundEvent.objects.filter(tenant=tenant, type="transaction.refunded", points__lt=0).exists()


def test_simulate_ingests_through_the_replay_and_shows_the_rate(shop):
    tenant, _ = shop

    out, err = run("simulate", events=60, tenant="shop", seed=5, batch_size=25)

    assert "Simulating 60 events for 4 members of 'shop' (seed 5" in out
    assert "\r  events 25/60" in out and "\r  events 60/60" in out
    assert summary_of(out) == {"events": 60, "applied": 60, "duplicate": 0, "rejected": 0, "invalid": 0}
    assert "events/s)" in out.splitlines()[-1]
    assert err == ""
    assert InboundEvent.objects.filter(tenant=tenant, status="APPLIED").count() == 60
    assert ledger_verify(tenant=tenant).ok

    # the same seed names the same events: run again, they are duplicates
    again, _ = run("simulate", events=60, tenant="shop", seed=5)
    assert summary_of(again)["duplicate"] == 60


def test_simulate_uses_the_action_codes_the_tenant_has_sent(shop, tmp_path):
    _, members = shop
    sent = {"eventId": "a-1", "type": "action", "memberRef": members[0].external_ref, "actionCode": "app.login"}
    run("replay_events", write_jsonl(tmp_path / "sent.jsonl", [sent]), tenant="shop")
    path = tmp_path / "events.jsonl"

    run("simulate", events=100, tenant="shop", seed=2, out=str(path), until=UNTIL)

    actions = [e for e in map(json.loads, path.read_text().splitlines()) if e["type"] == "action"]
    assert len(actions) == 10 and {e["actionCode"] for e in actions} == {"app.login"}


def test_simulate_uses_the_tenants_known_action_codes(shop, tmp_path):
    tenant, _ = shop
    for code in ("app.open", "review.posted"):
        action_upsert(tenant=tenant, code=code, description="")
    path = tmp_path / "events.jsonl"

    run("simulate", events=100, tenant="shop", seed=4, out=str(path), until=UNTIL)

    actions = [e for e in map(json.loads, path.read_text().splitlines()) if e["type"] == "action"]
    assert len(actions) == 10 and {e["actionCode"] for e in actions} <= {"app.open", "review.posted"}


def test_simulate_needs_members(db):
    TenantFactory(slug="demo")
    with pytest.raises(CommandError, match="no active members"):
        run("simulate", events=10)


# Parallel replay (--workers): forked processes with their own connections, so the rows
# must be committed for them to see (a transactional test database).


def _twin_shops(slugs: tuple[str, ...], members: int) -> list:
    tenants = []
    for slug in slugs:
        tenant = TenantFactory(slug=slug)
        for i in range(members):
            MemberFactory(tenant=tenant, external_ref=f"m-{i}")
        tenants.append(tenant)
    return tenants


def _points_by_event(tenant) -> dict[str, tuple[str, int | None]]:
    return {
        event_id: (status, points)
        for event_id, status, points in InboundEvent.objects.filter(tenant=tenant).values_list(
            "event_id", "status", "points"
        )
    }


@pytest.mark.django_db(transaction=True)
def test_a_replay_in_three_workers_applies_every_event_as_a_sequential_replay_does(tmp_path):
    # given the same simulated month for two tenants with the same members, refunds that name
    # no member (they follow their purchase to its worker), and lines that are not events
    sequential, parallel = _twin_shops(("seq", "par"), members=12)
    path = tmp_path / "events.jsonl"
    run("simulate", events=400, tenant="seq", seed=11, out=str(path), until=UNTIL, action_codes=["app.login"])
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for event in events:
        if event["type"] == "transaction.refunded" and event["eventId"].endswith("1"):
            del event["memberRef"]
    assert any(e["type"] == "transaction.refunded" and "memberRef" not in e for e in events)
    lines = [*events[:100], "{not json", *events[100:300], {"eventId": "x", "type": "action"}, *events[300:]]
    path = write_jsonl(path, lines)

    # when one replays them in one process and the other in three
    out_seq, err_seq = run("replay_events", path, tenant="seq", batch_size=25)
    out_par, err_par = run("replay_events", path, tenant="par", batch_size=25, workers=3)

    # then both count the same, report the same bad lines, and every event earned the same
    counts = {"events": 402, "applied": 400, "duplicate": 0, "rejected": 0, "invalid": 2}
    assert summary_of(out_seq) == counts
    assert summary_of(out_par) == counts
    assert sorted(err_par.splitlines()) == sorted(err_seq.splitlines())
    assert [line.split(":")[0] for line in sorted(err_par.splitlines())] == ["line 101", "line 302"]
    assert _points_by_event(parallel) == _points_by_event(sequential)
    assert len(_points_by_event(parallel)) == 400
    for i in range(12):
        ref = f"m-{i}"
        assert (
            member_get(tenant=parallel, external_ref=ref).balance
            == member_get(tenant=sequential, external_ref=ref).balance
        )
    assert ledger_verify(tenant=parallel).ok
    # and the progress was shown as batches came back from the workers
    assert "\r  events 402/402" in out_par

    # a second parallel replay finds every event already applied
    again, _ = run("replay_events", path, tenant="par", workers=3)
    assert summary_of(again) == {"events": 402, "applied": 0, "duplicate": 400, "rejected": 0, "invalid": 2}
    assert _points_by_event(parallel) == _points_by_event(sequential)


@pytest.mark.django_db(transaction=True)
def test_simulate_ingests_with_workers(tmp_path):
    (tenant,) = _twin_shops(("sim",), members=6)

    out, err = run("simulate", events=90, tenant="sim", seed=3, batch_size=20, workers=2)

    assert summary_of(out) == {"events": 90, "applied": 90, "duplicate": 0, "rejected": 0, "invalid": 0}
    assert err == ""
    assert InboundEvent.objects.filter(tenant=tenant, status="APPLIED").count() == 90
    assert ledger_verify(tenant=tenant).ok


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_fails_stops_the_replay_with_its_error(tmp_path, monkeypatch):
    from rewards import replay

    _twin_shops(("shop",), members=4)
    path = write_jsonl(tmp_path / "events.jsonl", [purchase(n, f"m-{n % 4}") for n in range(40)])

    def broken(tenant, chunk):
        raise RuntimeError("the engine broke")

    monkeypatch.setattr(replay, "_chunk_apply", broken)  # the forked workers inherit it

    with pytest.raises(replay.ReplayWorkerFailed, match="RuntimeError: the engine broke"):
        run("replay_events", path, tenant="shop", batch_size=5, workers=2)
    assert not InboundEvent.objects.exists()


def test_workers_must_be_one_or_more_and_more_than_one_needs_postgresql(shop, tmp_path, monkeypatch):
    from django.db import connection

    path = write_jsonl(tmp_path / "events.jsonl", [purchase(1, "m-0")])
    with pytest.raises(CommandError, match="--workers must be at least 1"):
        run("replay_events", path, tenant="shop", workers=0)
    monkeypatch.setattr(connection, "vendor", "sqlite")
    with pytest.raises(CommandError, match="--workers above 1 needs PostgreSQL"):
        run("replay_events", path, tenant="shop", workers=2)
    with pytest.raises(CommandError, match="--workers above 1 needs PostgreSQL"):
        run("simulate", events=10, tenant="shop", workers=2)
    assert not InboundEvent.objects.exists()


def test_lines_go_to_workers_by_member_and_a_refund_naming_no_member_follows_its_purchase():
    from rewards.replay import _share_of

    purchases: dict[int, int] = {}
    refs = [f"member-{i}" for i in range(40)]
    shares = {ref: _share_of(json.dumps(purchase(i, ref)), 4, purchases) for i, ref in enumerate(refs)}
    assert set(shares.values()) == {0, 1, 2, 3}
    for i, ref in enumerate(refs):
        # the same member, however padded, always to the same worker
        assert _share_of(json.dumps(purchase(100 + i, f"  {ref} ")), 4, purchases) == shares[ref]
        refund = {"eventId": f"refund-{i}", "type": "transaction.refunded", "originalEventId": f"order-{i}"}
        assert _share_of(json.dumps(refund), 4, purchases) == shares[ref]
    unknown = {"eventId": "refund-x", "type": "transaction.refunded", "originalEventId": "order-elsewhere"}
    assert _share_of(json.dumps(unknown), 4, purchases) == 0
    assert _share_of("{not json", 4, purchases) == 0
    assert _share_of("[1, 2]", 4, purchases) == 0
