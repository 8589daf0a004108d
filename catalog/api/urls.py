from django.urls import path

from catalog.api import views

urlpatterns = [
    path("catalog/categories", views.CategoryListCreateApi.as_view(), name="catalog-category-list"),
    path("catalog/categories/<str:code>", views.CategoryDetailApi.as_view(), name="catalog-category-detail"),
    path("catalog/items", views.ItemListCreateApi.as_view(), name="catalog-item-list"),
    path("catalog/search", views.ItemSearchApi.as_view(), name="catalog-search"),
    path("catalog/items/<str:item_id>", views.ItemDetailApi.as_view(), name="catalog-item-detail"),
    path(
        "catalog/items/<str:item_id>/stock-movements",
        views.StockMovementListCreateApi.as_view(),
        name="catalog-stock-movements",
    ),
]
