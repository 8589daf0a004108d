"""Catalog benchmark: search and the item list over 100,000 items of one tenant (and 20,000
of another, which search must skip). Cold searches miss the cache (each query is new to it);
warm ones hit it. Run with `make bench` (or `bench/run.py catalog` for this part alone)."""

import random
import statistics
import time
import uuid

from django.db import connection
from rest_framework.test import APIClient

from bench.common import progress, report, timed
from catalog.models import Category, Item
from catalog.search import results_cache
from tenants.services import tenant_create

BRANDS = ["Aurora", "Nimbus", "Vertex", "Solace", "Kestrel", "Lumen", "Orbit", "Cascade", "Ember", "Quill"]
ADJECTIVES = ["Wireless", "Portable", "Compact", "Premium", "Classic", "Smart", "Ultra", "Travel", "Deluxe", "Eco"]
NOUNS = [
    "Headphones", "Speaker", "Backpack", "Watch", "Camera", "Blender", "Lantern", "Kettle", "Jacket", "Sunglasses",
    "Keyboard", "Monitor", "Suitcase", "Tent", "Bicycle", "Drone", "Notebook", "Espresso Machine", "Yoga Mat",
    "Gift Card", "Lounge Pass", "Hotel Night", "Flight Voucher", "Cinema Ticket", "Streaming Plan",
]  # fmt: skip
DETAILS = ["with carrying case", "in midnight blue", "limited edition", "two-year warranty", "rechargeable",
           "water resistant", "for everyday use", "gift boxed", "with free delivery", "award winning"]  # fmt: skip
QUERIES = [
    "headphones", "headphnes", "wireless speaker", "speakr", "backpack", "bakcpack", "aurora watch", "camera",
    "camra", "espresso", "espreso machine", "yoga", "lounge pass", "hotel", "flight vouchr", "cinema", "drone",
    "kettle", "jackett", "sunglases", "travel suitcase", "keybaord", "monitor", "lantern", "premium tent",
    "bicycle", "notebok", "streaming", "gift card", "blender",
]  # fmt: skip
ITEMS = 100_000
OTHER_TENANT_ITEMS = 20_000
BATCH = 5_000


def _items(tenant, categories: list[Category], count: int, rng: random.Random, label: str) -> None:
    made = 0
    while made < count:
        batch = []
        for _ in range(min(BATCH, count - made)):
            noun = rng.choice(NOUNS)
            name = f"{rng.choice(BRANDS)} {rng.choice(ADJECTIVES)} {noun} {rng.randint(100, 999)}"
            batch.append(
                Item(
                    tenant=tenant,
                    name=name,
                    description=f"{name}, {rng.choice(DETAILS)}; {rng.choice(DETAILS)}.",
                    category=rng.choice(categories),
                    point_cost=rng.randint(100, 100_000),
                    stock_quantity=rng.choice([None, 0, rng.randint(1, 500)]),
                    is_in_offer_pool=rng.random() < 0.1,
                )
            )
        Item.objects.bulk_create(batch)  # the trigger fills each search vector
        made += len(batch)
        progress(label, made, count)


def catalog_bench() -> None:
    print("catalog: search and list over 100,000 items")
    rng = random.Random(20261202)
    tenant, issued = tenant_create(name=f"bench-catalog-{uuid.uuid4().hex[:8]}")
    other, _ = tenant_create(name=f"bench-catalog-other-{uuid.uuid4().hex[:8]}")
    shelves = [Category.objects.create(tenant=tenant, code=f"c{n}", name=f"Category {n}") for n in range(20)]
    other_shelves = [Category.objects.create(tenant=other, code=f"c{n}", name=f"Category {n}") for n in range(5)]
    started = time.perf_counter()
    _items(tenant, shelves, ITEMS, rng, "items loaded")
    _items(other, other_shelves, OTHER_TENANT_ITEMS, rng, "other tenant's items loaded")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_item")
    print(f"  loaded {ITEMS + OTHER_TENANT_ITEMS:,} items in {time.perf_counter() - started:.0f} s")

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=issued.raw)

    def search(i: int) -> None:
        response = client.get("/api/v1/catalog/search", {"q": QUERIES[i % len(QUERIES)], "pageSize": 20})
        assert response.status_code == 200, response.content

    def cold(i: int) -> None:
        results_cache.retire(tenant.pk)
        search(i)

    cold_samples = timed(cold, 90, "cold searches")
    report("GET /catalog/search, cold (cache miss)", cold_samples)
    for i in range(len(QUERIES)):
        search(i)  # every query answered once in the current version: what follows hits
    warm = timed(search, 300, "warm searches")
    report("GET /catalog/search, warm (cache hit)", warm)
    print(f"  cold / warm median: {statistics.median(cold_samples) / statistics.median(warm):.1f}x")

    hits = client.get("/api/v1/catalog/search", {"q": "headphnes"}).json()
    print(f"  'headphnes' -> {hits['count']} matches, first: {hits['results'][0]['name']!r}")

    def listing(i: int) -> None:
        params = [{}, {"category": "c3"}, {"minPoints": 1000, "maxPoints": 5000, "inStock": "true"}][i % 3]
        response = client.get("/api/v1/catalog/items", {**params, "pageSize": 50, "page": 1 + i % 5})
        assert response.status_code == 200, response.content

    report("GET /catalog/items (filters, 50 a page)", timed(listing, 150, "item list"))

    plans = {
        "full text": "search_vector @@ to_tsquery('simple', 'wireless & headphones:*')",
        "similar names": "'headphnes' <%% name",
    }
    for label, condition in plans.items():
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN SELECT id FROM catalog_item WHERE tenant_id = %s AND {condition}", [tenant.pk])
            plan = "\n".join(row[0] for row in cursor.fetchall())
        used = [name for name in ("catalog_item_search", "catalog_item_name_trgm") if name in plan]
        print(f"  {label} search uses index: {', '.join(used) or 'none (sequential scan)'}")
