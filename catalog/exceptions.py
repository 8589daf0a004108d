from core.exceptions import Conflict, DomainError, NotFound


class ItemNotFound(NotFound):
    default_code = "item_not_found"
    default_message = "Catalog item not found."


class CategoryNotFound(NotFound):
    default_code = "category_not_found"
    default_message = "Catalog category not found."


class CategoryAlreadyExists(Conflict):
    default_code = "category_exists"
    default_message = "A category with this code already exists."


class SkuAlreadyExists(Conflict):
    default_code = "sku_exists"
    default_message = "An item with this sku already exists."


class StaleVersion(Conflict):
    default_code = "stale_version"
    default_message = "The item was changed since this version; read it again and reapply the edit."


class OutOfStock(Conflict):
    default_code = "out_of_stock"
    default_message = "Not enough stock for this quantity."


class StockNotTracked(Conflict):
    default_code = "stock_not_tracked"
    default_message = "This item's stock is unlimited; it has no stock to move."


class InvalidReference(DomainError):
    """A field names something the tenant does not have (a category, partner or tier)."""

    default_code = "invalid"
