"""Demo catalog for the demo tenant (run after seed_demo and seed_demo_tiers); safe to run again.

Categories (some nested), partners and about forty items of every kind, written through the
catalog services, each with a small PNG drawn here with Pillow and stored through Django's
storage. What already exists (by code or sku, and an image already in storage) is left alone.
"""

import io
from decimal import Decimal

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from PIL import Image, ImageDraw, ImageFont

from catalog import services
from catalog.models import Category, Item, Partner
from rewards import contributions
from tenants.models import Tenant

IMAGE_SIZE = (400, 300)

PARTNERS = [
    ("northwind-gifts", "Northwind Gift Cards"),
    ("skyway-travel", "Skyway Travel"),
    ("parcelpro", "ParcelPro Fulfilment"),
]

# code, name, parent code, colour, names per locale. Parents come before their children.
CATEGORIES = [
    ("electronics", "Electronics", None, "#2563eb", {"ar": "إلكترونيات", "he": "אלקטרוניקה"}),
    ("audio", "Audio", "electronics", "#7c3aed", {"ar": "صوتيات", "he": "שמע"}),
    ("smart-home", "Smart Home", "electronics", "#0891b2", {"ar": "المنزل الذكي", "he": "בית חכם"}),
    ("home-kitchen", "Home & Kitchen", None, "#ea580c", {"ar": "المنزل والمطبخ", "he": "בית ומטבח"}),
    ("gift-cards", "Gift Cards", None, "#16a34a", {"ar": "بطاقات الهدايا", "he": "כרטיסי מתנה"}),
    ("travel", "Travel", None, "#0284c7", {"ar": "سفر", "he": "טיולים ונסיעות"}),
    ("experiences", "Experiences", "travel", "#db2777", {"ar": "تجارب", "he": "חוויות"}),
    ("statement-credits", "Statement Credits", None, "#475569", {"ar": "أرصدة الحساب", "he": "זיכויים בחשבון"}),
    ("digital", "Digital Rewards", None, "#ca8a04", {"ar": "مكافآت رقمية", "he": "פרסים דיגיטליים"}),
]

M, GC, TR, SC, DG = (
    Item.Kind.MERCHANDISE,
    Item.Kind.GIFT_CARD,
    Item.Kind.TRAVEL,
    Item.Kind.STATEMENT_CREDIT,
    Item.Kind.DIGITAL,
)

# sku, name, kind, category, points, cash value, stock (None: unlimited), offer pool,
# minimum tier, partner, names per locale, description.
ITEMS = [
    # Audio
    ("AUD-001", "Wireless Noise-Cancelling Headphones", M, "audio", 24000, "249.00", 25, True, "", "parcelpro",
     {"ar": "سماعات لاسلكية عازلة للضوضاء", "he": "אוזניות אלחוטיות מבטלות רעשים"},
     "Over-ear headphones with adaptive noise cancelling, 30-hour battery and a fold-flat travel case."),
    ("AUD-002", "True Wireless Earbuds", M, "audio", 12000, "129.00", 60, False, "", "parcelpro", {},
     "Sweat-resistant earbuds with a pocket charging case and touch controls."),
    ("AUD-003", "Portable Bluetooth Speaker", M, "audio", 8500, "89.00", 40, True, "", "parcelpro", {},
     "Waterproof speaker with 12 hours of rich, room-filling sound; pairs with a second speaker for stereo."),
    ("AUD-004", "Studio Monitor Headphones", M, "audio", 16000, "169.00", 8, False, "gold", "parcelpro", {},
     "Closed-back reference headphones tuned for mixing, with detachable coiled and straight cables."),
    ("AUD-005", "Belt-Drive Turntable", M, "audio", 19000, "199.00", 5, False, "silver", "parcelpro", {},
     "Two-speed turntable with a built-in preamp and USB output for digitising your records."),
    # Smart home
    ("SH-001", "Smart Speaker with Voice Assistant", M, "smart-home", 9000, "99.00", 30, False, "", "parcelpro", {},
     "Compact speaker that plays music, answers questions and controls your smart home by voice."),
    ("SH-002", "Wi-Fi Smart Plug (2-pack)", M, "smart-home", 2500, "24.99", None, True, "", "parcelpro", {},
     "Schedule lamps and appliances from your phone; no hub needed."),
    ("SH-003", "Video Doorbell", M, "smart-home", 15000, "159.00", 15, False, "", "parcelpro", {},
     "1080p HD video doorbell with two-way talk, motion alerts and night vision."),
    ("SH-004", "Smart LED Bulb Starter Kit", M, "smart-home", 6000, "59.99", None, False, "", "parcelpro", {},
     "Three colour-changing bulbs and a bridge: sixteen million colours and warm-to-cool whites."),
    # Electronics
    ("EL-001", "Fitness Tracker Watch", M, "electronics", 14000, "149.00", 30, False, "", "parcelpro",
     {"ar": "ساعة تتبع اللياقة", "he": "שעון מעקב כושר"},
     "Heart-rate, sleep and GPS tracking with a seven-day battery and swim-proof design."),
    ("EL-002", "10,000 mAh Power Bank", M, "electronics", 3500, "34.99", None, True, "", "parcelpro", {},
     "Slim fast-charging power bank with USB-C in and out; charges a phone about twice."),
    ("EL-003", "E-Reader with Warm Light", M, "electronics", 13000, "139.99", 20, False, "", "parcelpro", {},
     "Glare-free 6.8-inch display with adjustable warm light and weeks of battery life."),
    ("EL-004", "Compact Mirrorless Camera", M, "electronics", 65000, "699.00", 3, False, "gold", "parcelpro", {},
     "24-megapixel camera with a 15-45 mm kit lens, 4K video and a flip-up screen for vlogging."),
    # Home & Kitchen
    ("HK-001", "Insulated Travel Mug", M, "home-kitchen", 1800, "17.99", 200, True, "", "parcelpro",
     {"ar": "كوب سفر معزول", "he": "כוס טרמית לדרך"},
     "Double-walled stainless steel mug that keeps coffee hot for six hours; leak-proof lid."),
    ("HK-002", "Pour-Over Coffee Set", M, "home-kitchen", 4500, "44.00", 35, False, "", "parcelpro", {},
     "Glass carafe, ceramic dripper and 100 filters: everything for a slow morning brew."),
    ("HK-003", "Burr Coffee Grinder", M, "home-kitchen", 11000, "109.00", 12, False, "", "parcelpro", {},
     "Conical burr grinder with 40 grind settings, from espresso-fine to French-press coarse."),
    ("HK-004", "Espresso Machine", M, "home-kitchen", 45000, "449.00", 4, False, "gold", "parcelpro", {},
     "15-bar espresso machine with a steam wand for café-style lattes at home."),
    ("HK-005", "Cast Iron Skillet", M, "home-kitchen", 4000, "39.95", None, False, "", "parcelpro", {},
     "Pre-seasoned 10-inch skillet that goes from stovetop to oven to table."),
    ("HK-006", "Single-Origin Coffee Beans (1 kg)", M, "home-kitchen", 2200, "21.50", None, True, "", "",
     {"ar": "حبوب قهوة أحادية المنشأ (1 كغ)", "he": "פולי קפה ממקור יחיד (1 ק״ג)"},
     "Freshly roasted Ethiopian Yirgacheffe beans with notes of blueberry and jasmine."),
    # Gift cards
    ("GC-025", "$25 Bookstore Gift Card", GC, "gift-cards", 2500, "25.00", None, False, "", "northwind-gifts", {},
     "Spend in store or online on books, games and gifts. Delivered by email."),
    ("GC-030", "$30 Cinema Gift Card", GC, "gift-cards", 3000, "30.00", None, False, "", "northwind-gifts", {},
     "Two tickets and popcorn at any participating cinema."),
    ("GC-040", "$40 Restaurant Gift Card", GC, "gift-cards", 4000, "40.00", None, False, "", "northwind-gifts",
     {"ar": "بطاقة هدايا مطعم بقيمة 40 دولارًا", "he": "כרטיס מתנה למסעדה בשווי 40$"},
     "Accepted at more than 2,000 restaurants nationwide."),
    ("GC-050", "$50 Grocery Gift Card", GC, "gift-cards", 5000, "50.00", None, False, "", "northwind-gifts", {},
     "Good at the leading supermarket chains, in store and for online delivery."),
    ("GC-100", "$100 Department Store Gift Card", GC, "gift-cards", 10000, "100.00", None, True, "",
     "northwind-gifts", {}, "Fashion, home and beauty at any branch or online. Never expires."),
    ("GC-200", "$200 Home Improvement Gift Card", GC, "gift-cards", 20000, "200.00", None, False, "silver",
     "northwind-gifts", {}, "Tools, paint and garden supplies for your next project."),
    # Travel
    ("TR-001", "Airport Lounge Day Pass", TR, "travel", 4500, "45.00", None, False, "silver", "skyway-travel",
     {"ar": "تصريح يومي لصالة المطار", "he": "כניסה יומית לטרקלין בשדה התעופה"},
     "Quiet seating, Wi-Fi, food and drinks in over 1,000 airport lounges worldwide."),
    ("TR-002", "One-Night Boutique Hotel Stay", TR, "travel", 22000, "220.00", 20, False, "", "skyway-travel", {},
     "A night for two at one of 300 hand-picked boutique hotels, breakfast included."),
    ("TR-003", "Round-Trip Domestic Flight Voucher", TR, "travel", 40000, "400.00", 10, False, "gold",
     "skyway-travel", {}, "Economy round trip on any domestic route; book up to eleven months ahead."),
    ("TR-004", "Weekend Car Rental", TR, "travel", 18000, "180.00", None, False, "", "skyway-travel", {},
     "A compact car from Friday to Monday with unlimited mileage and basic cover."),
    ("TR-005", "Airline Miles Transfer (1,000 miles)", TR, "travel", 1500, "12.00", None, True, "",
     "skyway-travel", {}, "Move points to a partner frequent-flyer programme; credited within three days."),
    # Experiences
    ("EX-001", "Hot Air Balloon Ride for Two", TR, "experiences", 35000, "350.00", 6, False, "gold",
     "skyway-travel", {}, "A sunrise flight over the countryside with a champagne toast on landing."),
    ("EX-002", "Cooking Class with a Chef", TR, "experiences", 9500, "95.00", 16, False, "", "skyway-travel", {},
     "Three hours in a professional kitchen learning fresh pasta, then dinner together."),
    ("EX-003", "Spa Day Package", TR, "experiences", 15000, "150.00", 10, True, "", "skyway-travel",
     {"ar": "باقة يوم في المنتجع الصحي", "he": "חבילת יום ספא"},
     "A 60-minute massage, a facial and full use of the thermal suite."),
    # Statement credits
    ("SC-010", "$10 Statement Credit", SC, "statement-credits", 1000, "10.00", None, True, "", "",
     {"ar": "رصيد بقيمة 10 دولارات", "he": "זיכוי בחשבון בסך 10$"},
     "Ten dollars off your next statement, applied within two billing days."),
    ("SC-025", "$25 Statement Credit", SC, "statement-credits", 2500, "25.00", None, False, "", "", {},
     "Twenty-five dollars off your next statement."),
    ("SC-050", "$50 Statement Credit", SC, "statement-credits", 5000, "50.00", None, False, "", "", {},
     "Fifty dollars off your next statement."),
    ("SC-100", "$100 Statement Credit", SC, "statement-credits", 9500, "100.00", None, False, "silver", "", {},
     "A hundred dollars off your next statement, at our best points rate."),
    # Digital
    ("DG-001", "3-Month Music Streaming Subscription", DG, "digital", 3000, "29.97", None, True, "", "",
     {"ar": "اشتراك بث موسيقى لمدة 3 أشهر", "he": "מנוי סטרימינג מוזיקה ל־3 חודשים"},
     "Ad-free music and podcasts on all your devices; the code arrives by email."),
    ("DG-002", "E-Book Bundle (5 titles)", DG, "digital", 2000, "19.99", None, False, "", "", {},
     "Five best-selling e-books of your choice from a list of 500."),
    ("DG-003", "Online Photography Course", DG, "digital", 6000, "59.00", None, False, "", "", {},
     "Twelve video lessons from composition to editing, with lifetime access."),
    ("DG-004", "Mobile Game Credits (1,000 gems)", DG, "digital", 1000, "9.99", None, False, "", "", {},
     "In-game currency for the most popular mobile titles."),
    ("DG-005", "Premium Meditation App (1 year)", DG, "digital", 5000, "49.99", 250, False, "silver", "", {},
     "A year of guided meditations, sleep stories and focus music."),
]  # fmt: skip


# Images ----------------------------------------------------------------------------------


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i : i + 2], 16) for i in (0, 2, 4))


def _shade(rgb, factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c * factor))) for c in rgb)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def _icon(draw, kind: str, box: tuple[int, int, int, int], colour) -> None:
    """A simple white pictogram per kind inside `box`."""
    x0, y0, x1, y1 = box
    cx, cy, w = (x0 + x1) // 2, (y0 + y1) // 2, x1 - x0
    white = (255, 255, 255)
    if kind == Item.Kind.MERCHANDISE:  # a gift box
        draw.rounded_rectangle((x0, y0 + w // 4, x1, y1), radius=8, fill=white)
        draw.rectangle((cx - 5, y0 + w // 4, cx + 5, y1), fill=colour)
        draw.rectangle((x0, y0 + w // 4 + 14, x1, y0 + w // 4 + 22), fill=colour)
        draw.ellipse((cx - 22, y0, cx, y0 + w // 4 + 2), outline=white, width=6)
        draw.ellipse((cx, y0, cx + 22, y0 + w // 4 + 2), outline=white, width=6)
    elif kind == Item.Kind.GIFT_CARD:  # a card with a stripe and a chip
        draw.rounded_rectangle((x0, y0 + 10, x1, y1 - 10), radius=10, fill=white)
        draw.rectangle((x0, y0 + 24, x1, y0 + 34), fill=colour)
        draw.rounded_rectangle((x0 + 10, cy + 2, x0 + 30, cy + 16), radius=3, fill=colour)
    elif kind == Item.Kind.TRAVEL:  # a globe
        draw.ellipse(box, outline=white, width=6)
        draw.ellipse((cx - w // 5, y0, cx + w // 5, y1), outline=white, width=4)
        draw.line((x0, cy, x1, cy), fill=white, width=4)
        draw.line((x0 + 8, cy - w // 4, x1 - 8, cy - w // 4), fill=white, width=3)
        draw.line((x0 + 8, cy + w // 4, x1 - 8, cy + w // 4), fill=white, width=3)
    elif kind == Item.Kind.STATEMENT_CREDIT:  # a coin
        draw.ellipse(box, fill=white)
        draw.ellipse((x0 + 8, y0 + 8, x1 - 8, y1 - 8), outline=colour, width=4)
        font = _font(40)
        draw.text((cx, cy), "$", font=font, fill=colour, anchor="mm")
    else:  # digital: a play button
        draw.rounded_rectangle(box, radius=16, fill=white)
        draw.polygon([(cx - 12, cy - 18), (cx - 12, cy + 18), (cx + 18, cy)], fill=colour)


def item_image(*, name: str, kind: str, category: str, colour: str, points: int) -> bytes:
    """A 400x300 PNG card: the category's colour, an icon for the kind, the name and price."""
    base = _rgb(colour)
    image = Image.new("RGB", IMAGE_SIZE, base)
    draw = ImageDraw.Draw(image)
    width, height = IMAGE_SIZE
    top, bottom = _shade(base, 1.15), _shade(base, 0.7)
    for y in range(height):  # a vertical gradient
        t = y / (height - 1)
        draw.line((0, y, width, y), fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    overlay = Image.new("RGBA", IMAGE_SIZE, (0, 0, 0, 0))
    shapes = ImageDraw.Draw(overlay)
    shapes.ellipse((250, -90, 470, 130), fill=(255, 255, 255, 38))
    shapes.ellipse((-60, 200, 120, 380), fill=(255, 255, 255, 22))
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(image)
    _icon(draw, kind, (28, 28, 108, 108), _shade(base, 0.8))
    badge = f"{points:,} pts"
    small = _font(16)
    badge_width = int(draw.textlength(badge, font=small)) + 24
    draw.rounded_rectangle((width - badge_width - 20, 28, width - 20, 58), radius=15, fill=(255, 255, 255))
    draw.text((width - 20 - badge_width / 2, 43), badge, font=small, fill=_shade(base, 0.7), anchor="mm")
    draw.text((28, 150), category.upper(), font=small, fill=_shade(base, 0.35) if sum(base) > 600 else (235, 240, 255))
    title = _font(26)
    for n, line in enumerate(_wrap(draw, name, title, width - 56)[:3]):
        draw.text((28, 176 + n * 32), line, font=title, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# The command -----------------------------------------------------------------------------


class Command(BaseCommand):
    help = "Create the demo tenant's catalog: categories, partners and items with images."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo")

    def handle(self, *args, slug: str, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant {slug!r}: run seed_demo first.")
        # Tier-exclusive items need the demo tiers (seed_demo_tiers); without them they are open to all.
        tiers = set(contributions.tier_ladder(tenant))
        partners = self._partners(tenant)
        categories = self._categories(tenant)
        existing = {item.sku: item for item in Item.objects.filter(tenant=tenant, sku__in=[row[0] for row in ITEMS])}
        colours = {code: colour for code, _, _, colour, _ in CATEGORIES}
        created = drawn = 0
        for code, name, *_ in CATEGORIES:
            rows = [row for row in ITEMS if row[3] == code]
            new_here = 0
            for row in rows:
                item, was_created = self._item(tenant, row, existing, tiers, partners, categories)
                if was_created:
                    new_here += 1
                if self._image(item, row, categories[code], colours[code]):
                    drawn += 1
            created += new_here
            self.stdout.write(f"  catalog: {name:<18} {len(rows):>2} items ({new_here} new)")
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo catalog ready: {len(CATEGORIES)} categories, {len(ITEMS)} items "
                f"({created} new, {drawn} images drawn), {len(PARTNERS)} partners."
            )
        )

    def _partners(self, tenant) -> dict[str, Partner]:
        partners = {}
        for code, name in PARTNERS:
            partners[code], _ = Partner.objects.get_or_create(tenant=tenant, code=code, defaults={"name": name})
        return partners

    def _categories(self, tenant) -> dict[str, Category]:
        categories = {c.code: c for c in Category.objects.filter(tenant=tenant)}
        for order, (code, name, parent, _colour, names) in enumerate(CATEGORIES):
            if code not in categories:
                categories[code] = services.category_create(
                    tenant=tenant,
                    code=code,
                    name=name,
                    names=names,
                    parent=parent,
                    sort_order=order,
                    description=f"{name} rewards.",
                )
        return categories

    def _item(self, tenant, row, existing, tiers, partners, categories) -> tuple[Item, bool]:
        sku, name, kind, category, points, cash, stock, offer_pool, min_tier, partner, names, description = row
        if sku in existing:
            return existing[sku], False
        item = services.item_create(
            tenant=tenant,
            actor="seed_demo_catalog",
            stock_quantity=stock,
            sku=sku,
            name=name,
            names=names,
            description=description,
            kind=kind,
            category=category,
            partner=partner or None,
            point_cost=points,
            cash_value=Decimal(cash),
            is_in_offer_pool=offer_pool,
            min_tier=min_tier if min_tier in tiers else "",
        )
        return item, True

    def _image(self, item: Item, row, category: Category, colour: str) -> bool:
        """Draw and store the item's image unless it already has one in storage."""
        if item.image and default_storage.exists(item.image.name):
            return False
        sku, name, kind, *_ = row
        png = item_image(name=name, kind=kind, category=category.name, colour=colour, points=item.point_cost)
        item.image.save(f"{sku.lower()}.png", ContentFile(png), save=False)
        item.save(update_fields=["image"])
        return True
