"""Redemptions benchmark: the request (`POST /api/v1/redemptions`) one after another and from
16 threads, on distinct items and on one hot item; fulfilment against the in-process sandbox
partner; and the reconciliation sweep's query over 20,000 redemptions. Run with `make bench`
(or `bench/run.py redemptions` for this part alone); BENCH_PROFILE=1 adds a pyinstrument
profile of 100 sequential requests."""

import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from bench.common import progress, queries_and_profile, report, timed
from catalog.models import Item, Partner
from catalog.services import item_create
from redemptions import workflow
from redemptions.models import PartnerConfig, Redemption
from redemptions.partners.sandbox import PartnerSandbox
from rewards.services import member_create, member_token_issue, points_adjust
from tenants.services import tenant_create

MEMBERS = 400
THREADS = 16
POINT_COST = 100
RECONCILE_ROWS = 20_000
BATCH = 5_000
S = Redemption.Status


def _explain(text: str) -> None:
    print(f"  # {text}")


def _p95(samples: list[float]) -> float:
    samples = sorted(samples)
    return samples[int(len(samples) * 0.95) - 1]


def _in_threads(label: str, workers: int, total: int, call) -> tuple[float, list[float], list]:
    """Run `call(i)` for i in range(total) on `workers` threads, each on its own database
    connection (closed when the thread's share is done): (seconds, per-call ms, results)."""
    samples: list[float] = []
    results: list = []
    lock = threading.Lock()
    done = [0]

    def share(worker: int) -> None:
        try:
            for i in range(worker, total, workers):
                started = time.perf_counter()
                result = call(i)
                took = (time.perf_counter() - started) * 1000
                with lock:
                    samples.append(took)
                    results.append(result)
                    done[0] += 1
                    if done[0] % max(1, total // 10) == 0 or done[0] == total:
                        progress(label, done[0], total)
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(share, range(workers)))
    return time.perf_counter() - started, samples, results


def redemptions_bench() -> None:
    print("redemptions: request, fulfilment and the reconciliation sweep")
    saved = {
        name: getattr(settings, name)
        for name in (
            "OUTBOX_RELAY_ON_COMMIT",
            "REDEMPTION_FULFIL_ON_COMMIT",
            "REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS",
        )
    }
    # With no broker Celery would run fulfilment (and the outbox relay) inside the request;
    # here the request is measured alone and fulfilment on its own below. The sandbox partner
    # listens on 127.0.0.1, which production refuses as a partner address.
    settings.OUTBOX_RELAY_ON_COMMIT = False
    settings.REDEMPTION_FULFIL_ON_COMMIT = False
    settings.REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS = True
    sandbox = PartnerSandbox().start()
    try:
        _run(sandbox)
    finally:
        sandbox.stop()
        for name, value in saved.items():
            setattr(settings, name, value)


def _run(sandbox: PartnerSandbox) -> None:
    tenant, _ = tenant_create(name=f"bench-redemptions-{uuid.uuid4().hex[:8]}")
    partner = Partner.objects.create(tenant=tenant, code="sandbox", name="Sandbox")
    PartnerConfig.objects.create(
        tenant=tenant, partner=partner, base_url=sandbox.url, enabled_kinds=[kind.value for kind in Item.Kind]
    )

    def reward(name: str, stock: int | None) -> Item:
        return item_create(
            tenant=tenant,
            name=name,
            kind=Item.Kind.GIFT_CARD,
            point_cost=POINT_COST,
            cash_value=Decimal("5.00"),
            stock_quantity=stock,
        )

    unlimited = reward("Gift card (unlimited)", None)
    own_items = [reward(f"Gift card {n}", 10_000) for n in range(THREADS)]
    hot = reward("Gift card (hot)", 100_000)
    sold_out = reward("Gift card (50 left)", 50)

    members = []
    for i in range(MEMBERS):
        member = member_create(tenant=tenant, external_ref=f"r-{i}")
        points_adjust(tenant=tenant, member=member, points=POINT_COST * 100, reason="bench", actor="bench")
        members.append(member)
        if (i + 1) % (MEMBERS // 10) == 0:
            progress("members with points", i + 1, MEMBERS)
    tokens = [member_token_issue(member=member)[0] for member in members]

    def redeem(client: APIClient, member: int, item: Item):
        return client.post(
            "/api/v1/redemptions",
            {"itemId": str(item.pk)},
            format="json",
            HTTP_AUTHORIZATION=f"Bearer {tokens[member]}",
            HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
        )

    # 1. One request after another, each by another member, on an item with unlimited stock.
    client = APIClient()

    def one(i: int) -> None:
        response = redeem(client, i % MEMBERS, unlimited)
        assert response.status_code == 201, response.content

    _explain("the request end to end in this process: token, idempotency record, the redemption transaction")
    started = time.perf_counter()
    samples = timed(one, 300, "sequential redemptions")
    elapsed = time.perf_counter() - started
    report("POST /redemptions (sequential)", samples)
    print(f"  POST /redemptions, sequential: {300 / elapsed:.0f} requests/s")
    queries_and_profile(one, 100)

    # 2. 16 threads, each with its own client and connection; request i by member i.
    def concurrent(label: str, item_for) -> float:
        clients = threading.local()

        def call(i: int) -> None:
            if not hasattr(clients, "client"):
                clients.client = APIClient()
            response = redeem(clients.client, i % MEMBERS, item_for(i))
            assert response.status_code == 201, response.content

        elapsed, samples, _ = _in_threads(label, THREADS, MEMBERS, call)
        rate = MEMBERS / elapsed
        print(f"  POST /redemptions, {label}: {rate:.0f} requests/s, p95={_p95(samples):.2f} ms")
        return rate

    _explain(f"{THREADS} threads on distinct members; (a) each thread its own item, (b) all on one item")
    distinct = concurrent(f"{THREADS} threads, distinct items", lambda i: own_items[i % THREADS])
    hot_rate = concurrent(f"{THREADS} threads, one hot item", lambda _i: hot)
    _explain("the hot item's row lock is the only shared row: this ratio is what queueing on it costs")
    print(f"  hot / distinct throughput: {hot_rate / distinct:.2f}")

    # (c) 200 members racing for the last 50.
    clients = threading.local()

    def race(i: int) -> int:
        if not hasattr(clients, "client"):
            clients.client = APIClient()
        return redeem(clients.client, i, sold_out).status_code

    _explain("200 requests for 50 in stock: exactly 50 may succeed, the others get 409 out_of_stock")
    elapsed, _, codes = _in_threads(f"sold-out race, {THREADS} threads", THREADS, 200, race)
    outcomes = Counter(codes)
    left = Item.objects.values_list("stock_quantity", flat=True).get(pk=sold_out.pk)
    print(
        f"  sold-out race: {elapsed * 1000:.0f} ms for 200 requests; {outcomes.get(201, 0)} succeeded, "
        f"{outcomes.get(409, 0)} got 409, other {sum(n for c, n in outcomes.items() if c not in (201, 409))}; "
        f"stock left {left}"
    )

    # 3. Fulfilment of the PENDING redemptions made above, against the sandbox partner.
    pending = list(
        Redemption.objects.filter(tenant=tenant, status=S.PENDING).order_by("created_at").values_list("pk", flat=True)
    )

    def fulfil(redemption_id) -> None:
        step = workflow.fulfil(redemption_id)
        assert step.outcome == "completed", step

    def fulfilment(mode: str, sequential: int, threaded: int) -> None:
        batch = [pending.pop() for _ in range(sequential)]
        samples = timed(lambda i: fulfil(batch[i]), sequential, f"fulfil, partner {mode}")
        report(f"workflow.fulfil, partner {mode} (sequential)", samples)
        batch = [pending.pop() for _ in range(threaded)]
        elapsed, _, _ = _in_threads(f"fulfil, partner {mode}, 8 threads", 8, threaded, lambda i: fulfil(batch[i]))
        print(f"  workflow.fulfil, partner {mode}, 8 threads: {threaded / elapsed:.0f} redemptions/s")

    _explain("claim, one HTTP call to the sandbox partner (in this process), completion and its event")
    sandbox.set_mode("ok")
    fulfilment("ok", 200, 400)
    _explain("the partner taking 50 ms: its latency is most of each fulfilment; threads overlap the waits")
    sandbox.set_mode("slow", delay=0.05)
    fulfilment("slow (50 ms)", 40, 160)
    sandbox.set_mode("ok")

    reconcile_bench(tenant, members, unlimited)


def reconcile_bench(tenant, members, item: Item) -> None:
    """4. The reconciliation sweep's selection over 20,000 redemptions, about 1% of them stuck."""
    # What the parts above left open (no worker fulfils them here) is not this part's to find.
    Redemption.objects.filter(status__in=[S.PENDING, S.FULFILLING, S.FAILED]).update(status=S.COMPLETED)
    rng = random.Random(20261203)
    now = timezone.now()
    stale = now - settings.REDEMPTION_STUCK_AFTER - timedelta(minutes=10)
    # (status, how many, lease_expires_at): ~1% stuck, ~1% open and in hand, the rest final.
    groups = [
        (S.PENDING, 100, None),  # stuck: never picked up
        (S.FAILED, 50, None),  # stuck: refund not done
        (S.FULFILLING, 50, now - timedelta(minutes=5)),  # stuck: the worker's lease ran out
        (S.PENDING, 100, None),  # fresh: just requested
        (S.FULFILLING, 100, now + timedelta(minutes=5)),  # fresh: a worker holds it
    ]
    finals = RECONCILE_ROWS - sum(count for _, count, _ in groups)
    groups += [(S.COMPLETED, finals * 90 // 100, None), (S.REFUNDED, finals * 5 // 100, None)]
    groups.append((S.CANCELLED, RECONCILE_ROWS - sum(count for _, count, _ in groups), None))

    def row(status: str, lease) -> Redemption:
        return Redemption(
            tenant=tenant,
            member=rng.choice(members),
            item=item,
            item_kind=item.kind,
            quantity=1,
            status=status,
            unit_point_cost=POINT_COST,
            unit_points=POINT_COST,
            points=POINT_COST,
            cash_value=Decimal("5.00"),
            currency=tenant.currency,
            point_value=tenant.point_value,
            lease_expires_at=lease,
        )

    started = time.perf_counter()
    made = 0
    stuck_ids, final_ids = [], []
    for index, (status, count, lease) in enumerate(groups):
        for offset in range(0, count, BATCH):
            rows = Redemption.objects.bulk_create([row(status, lease) for _ in range(min(BATCH, count - offset))])
            made += len(rows)
            if index < 3:
                stuck_ids += [r.pk for r in rows]
            elif index >= 5:
                final_ids += [r.pk for r in rows]
            progress("redemptions loaded", made, RECONCILE_ROWS)
    # bulk_create stamps updated_at now; the stuck ones and the final ones are older.
    Redemption.objects.filter(pk__in=stuck_ids).update(updated_at=stale)
    Redemption.objects.filter(pk__in=final_ids).update(updated_at=now - timedelta(days=30))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Redemption._meta.db_table}")
    print(f"  loaded {RECONCILE_ROWS:,} redemptions in {time.perf_counter() - started:.0f} s")

    def selection():
        return workflow.stuck(timezone.now()).values_list("pk", flat=True)[:1000]

    _explain("the sweep's query (workflow.stuck, first 1,000 ids) as redemptions_reconcile runs it")
    found = len(list(selection()))
    samples = timed(lambda _i: list(selection()), 100, "stuck selection")
    report(f"reconcile selection ({found} of {RECONCILE_ROWS:,} stuck)", samples)
    plan = selection().explain(analyze=True)
    used = "redemption_open_by_age" in plan
    execution = next((line.strip() for line in plan.splitlines() if line.startswith("Execution Time")), "")
    print(f"  stuck query uses index redemption_open_by_age: {'yes' if used else 'no'} (EXPLAIN ANALYZE {execution})")
    if not used:
        print("\n".join(f"    {line}" for line in plan.splitlines()))
