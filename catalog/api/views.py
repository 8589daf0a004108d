"""The reward catalog API: categories, items (members see what their tier reaches), search,
and stock movements. Reads take a member token too; writes are the tenant's."""

from functools import cached_property

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from catalog import search, selectors, services
from catalog.api.serializers import (
    CatalogCategorySerializer,
    CatalogCategoryUpdateSerializer,
    CatalogCategoryWriteSerializer,
    CatalogItemCreateSerializer,
    CatalogItemQuerySerializer,
    CatalogItemSearchQuerySerializer,
    CatalogItemSerializer,
    CatalogItemUpdateSerializer,
    StockMovementSerializer,
    StockMovementWriteSerializer,
)
from catalog.exceptions import CategoryNotFound
from catalog.models import Category, Item, StockMovement
from catalog.pricing import max_affordable_cost
from core.api.pagination import LedgerCursorPagination, PagePagination
from core.api.permissions import IsTenantClientOrMemberReading
from core.api.principals import actor_of
from core.api.schema import domain_errors
from core.api.views import TenantOrMemberAPIView
from rewards import selectors as member_selectors

LOCALE_HEADER = OpenApiParameter(
    name="Accept-Language",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description="Locales by preference for `name` (`?locale=` beats it).",
)
IF_MATCH = OpenApiParameter(
    name="If-Match",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description='The item version the edit is based on, as its ETag ("3"); or send `version` in the body.',
)


class CatalogApiBase(TenantOrMemberAPIView):
    permission_classes = [IsTenantClientOrMemberReading]

    def locale_context(self) -> dict:
        return {
            "requested_locale": self.request.query_params.get("locale") or None,
            "accept_language": self.request.headers.get("Accept-Language"),
            "default_locale": self.tenant.default_locale,
        }

    def get_serializer_context(self):
        return {**super().get_serializer_context(), **self.locale_context()}

    def check_writer(self) -> None:
        if self.member is not None:
            raise PermissionDenied("Members read the catalog; the tenant changes it.")


# Categories ------------------------------------------------------------------------------


class CategoryListCreateApi(CatalogApiBase, ListAPIView):
    queryset = Category.objects.none()  # for the schema; requests use get_queryset
    serializer_class = CatalogCategorySerializer
    filter_backends = []

    def get_queryset(self):
        viewer = selectors.Viewer(member=self.member) if self.member else None
        return selectors.category_list(tenant=self.tenant, viewer=viewer)

    @extend_schema(
        summary="List catalog categories",
        description="Members see active ones.",
        parameters=[OpenApiParameter("locale", str), LOCALE_HEADER],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a catalog category",
        request=CatalogCategoryWriteSerializer,
        responses={201: CatalogCategorySerializer, **domain_errors(e409="category_exists: the code is taken")},
    )
    def post(self, request):
        self.check_writer()
        serializer = CatalogCategoryWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        category = services.category_create(tenant=self.tenant, **serializer.validated_data)
        return Response(CatalogCategorySerializer(category, context=self.locale_context()).data, status=201)


class CategoryDetailApi(CatalogApiBase):
    @extend_schema(summary="Get a catalog category", responses=CatalogCategorySerializer)
    def get(self, request, code):
        category = selectors.category_get(tenant=self.tenant, code=code)
        if self.member is not None and not category.is_active:
            raise CategoryNotFound(field="code")  # as for any category that does not exist
        return Response(CatalogCategorySerializer(category, context=self.locale_context()).data)

    @extend_schema(
        summary="Change a catalog category",
        request=CatalogCategoryUpdateSerializer,
        responses=CatalogCategorySerializer,
    )
    def patch(self, request, code):
        self.check_writer()
        category = selectors.category_get(tenant=self.tenant, code=code)
        serializer = CatalogCategoryUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        category = services.category_update(category=category, **serializer.validated_data)
        return Response(CatalogCategorySerializer(category, context=self.locale_context()).data)


# Items -----------------------------------------------------------------------------------


class ItemReadMixin:
    def viewer_and_query(self, serializer_class):
        query = serializer_class(data=self.request.query_params.dict(), context={"member": self.member})
        query.is_valid(raise_exception=True)
        data = query.validated_data
        member = self.member
        if member is None and data.get("memberRef"):
            member = member_selectors.member_get(tenant=self.tenant, external_ref=data["memberRef"])
        elif member is not None and (data.get("memberRef") or data.get("includeInactive")):
            field = "memberRef" if data.get("memberRef") else "includeInactive"
            raise serializers.ValidationError({field: ["Only the tenant's backend or operators may send this."]})
        viewer = selectors.viewer_for(tenant=self.tenant, member=member)
        include_inactive = bool(data.get("includeInactive")) and not viewer.is_member
        return viewer, query, include_inactive

    def item_context(self, viewer) -> dict:
        return {**self.get_serializer_context(), "viewer": viewer, "currency": self.tenant.currency}


class ItemListCreateApi(ItemReadMixin, CatalogApiBase, ListAPIView):
    queryset = Item.objects.none()  # for the schema; requests use get_queryset
    serializer_class = CatalogItemSerializer
    filter_backends = []
    pagination_class = PagePagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            self.viewer = selectors.Viewer()
            return Item.objects.none()
        self.viewer, query, include_inactive = self.viewer_and_query(CatalogItemQuerySerializer)
        return selectors.item_list(
            tenant=self.tenant, viewer=self.viewer, include_inactive=include_inactive, **query.filters()
        )

    def get_serializer(self, *args, **kwargs):
        if not getattr(self, "swagger_fake_view", False):
            # An OPTIONS request describes the serializer without listing, so without a viewer.
            kwargs["context"] = self.item_context(getattr(self, "viewer", None))
        return CatalogItemSerializer(*args, **kwargs)

    @extend_schema(
        summary="List catalog items",
        description="Cheapest first. A member sees the active items their tier reaches, with "
        "`memberPointCost` after their tier's discount; the tenant sees every active item (or, "
        "with `memberRef`, the catalog as that member sees it).",
        parameters=[CatalogItemQuerySerializer, LOCALE_HEADER],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Add a catalog item",
        request=CatalogItemCreateSerializer,
        responses={201: CatalogItemSerializer, **domain_errors(e409="sku_exists: the sku is taken")},
    )
    def post(self, request):
        self.check_writer()
        serializer = CatalogItemCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = services.item_create(tenant=self.tenant, actor=actor_of(request), **serializer.validated_data)
        item = selectors.item_get(tenant=self.tenant, item_id=item.pk)
        response = Response(CatalogItemSerializer(item, context=self.item_context(None)).data, status=201)
        response["ETag"] = f'"{item.version}"'
        return response


def _expected_version(request, data: dict) -> int:
    """The version an edit is based on: `version` in the body, else the If-Match ETag."""
    if data.get("version") is not None:
        return data["version"]
    header = (request.headers.get("If-Match") or "").strip().removeprefix("W/").strip('"')
    if header.isdigit():
        return int(header)
    raise serializers.ValidationError({"version": ["Send the version the edit is based on (or If-Match)."]})


class ItemDetailApi(CatalogApiBase):
    def respond(self, item, *, code=200) -> Response:
        context = {
            **self.locale_context(),
            "request": self.request,
            "viewer": self.viewer,
            "currency": self.tenant.currency,
        }
        response = Response(CatalogItemSerializer(item, context=context).data, status=code)
        response["ETag"] = f'"{item.version}"'
        return response

    @cached_property
    def viewer(self):
        return selectors.viewer_for(tenant=self.tenant, member=self.member)

    def item(self):
        return selectors.item_get(tenant=self.tenant, item_id=self.kwargs["item_id"], viewer=self.viewer)

    @extend_schema(
        summary="Get a catalog item",
        description="Members get a 404 for items their tier does not reach and for inactive ones.",
        responses=CatalogItemSerializer,
        parameters=[OpenApiParameter("locale", str), LOCALE_HEADER],
    )
    def get(self, request, item_id):
        return self.respond(self.item())

    def _update(self, request, *, partial: bool):
        self.check_writer()
        item = self.item()
        serializer = CatalogItemUpdateSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        expected = _expected_version(request, data)
        data.pop("version", None)
        return self.respond(services.item_update(item=item, expected_version=expected, fields=data))

    @extend_schema(
        summary="Replace a catalog item",
        description="Optimistic locking: the edit names the version it is based on; if the item has "
        "changed since, a 409 `stale_version` and nothing changes. Stock moves through stock movements.",
        request=CatalogItemUpdateSerializer,
        parameters=[IF_MATCH],
        responses={200: CatalogItemSerializer, **domain_errors(e409="stale_version, or sku_exists")},
    )
    def put(self, request, item_id):
        return self._update(request, partial=False)

    @extend_schema(
        summary="Change a catalog item",
        description="As PUT, for the fields sent.",
        request=CatalogItemUpdateSerializer,
        parameters=[IF_MATCH],
        responses={200: CatalogItemSerializer, **domain_errors(e409="stale_version, or sku_exists")},
    )
    def patch(self, request, item_id):
        return self._update(request, partial=True)

    @extend_schema(
        summary="Deactivate a catalog item",
        description="The item leaves the catalog members see; its history stays.",
        request=None,
        responses={204: None},
    )
    def delete(self, request, item_id):
        self.check_writer()
        services.item_deactivate(item=self.item())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ItemSearchApi(ItemReadMixin, CatalogApiBase):
    pagination_class = PagePagination

    @extend_schema(
        summary="Search the catalog",
        description="Full-text search over names (every locale) and descriptions, best match first; "
        "the last word matches as a prefix. When no item has every word, names similar to the query "
        "are returned instead (typos; `X-Search-Match: similar`, else `fulltext`). Takes the "
        "list's filters. Results are cached five minutes and retired by any change to the catalog.",
        parameters=[CatalogItemSearchQuerySerializer, LOCALE_HEADER],
        responses=CatalogItemSerializer(many=True),
    )
    def get(self, request):
        viewer, query, include_inactive = self.viewer_and_query(CatalogItemSearchQuerySerializer)
        filters = query.filters()
        missed = []

        def render() -> tuple[str, str, bytes]:
            missed.append(True)
            match, data = self.page(viewer=viewer, query=query, include_inactive=include_inactive, filters=filters)
            renderer = request.accepted_renderer
            body = renderer.render(data, request.accepted_media_type, self.get_renderer_context())
            return match, request.accepted_media_type, body

        # A hit serves the rendered page: no items loaded, nothing serialized. Its key holds all
        # that shapes the bytes (see page_key); any catalog write retires it with the rest of
        # the tenant's searches (catalog.search).
        (match, content_type, body), _ = search.results_cache.get_or_load(
            tenant_pk=self.tenant.pk,
            parts=self.page_key(viewer=viewer, include_inactive=include_inactive, filters=filters),
            load=render,
        )
        if not missed:
            search.SEARCH_CACHE.labels(result="page").inc()
        response = HttpResponse(body, content_type=content_type)
        response["X-Cache"] = "MISS" if missed else "HIT"
        response["X-Search-Match"] = match
        return response

    def page_key(self, *, viewer, include_inactive: bool, filters: dict) -> dict:
        """What a rendered page depends on besides the catalog itself: the URL (query, filters,
        page, page size, locale; its host too, as the page links are absolute), the names the
        caller prefers, the tenant's default locale and currency, and what the viewer changes
        (the tiers it reaches, its discount in memberPointCost, its balance when `affordable`
        filters by it). Members in the same tier share pages; no member's id is in them."""
        request = self.request
        return {
            "page": request.build_absolute_uri(),
            "accept_language": request.headers.get("Accept-Language"),
            "media_type": request.accepted_media_type,
            "default_locale": self.tenant.default_locale,
            "currency": self.tenant.currency,
            "inactive": include_inactive,
            "member": viewer.is_member,
            "tiers": viewer.tiers,
            "discount": str(viewer.discount_percentage) if viewer.is_member else None,
            "ceiling": max_affordable_cost(viewer.balance, viewer.discount_percentage)
            if viewer.is_member and filters.get("affordable") is not None
            else None,
        }

    def page(self, *, viewer, query, include_inactive: bool, filters: dict) -> tuple[str, dict]:
        """(match, data): the requested page of the best matches, serialized."""
        ids, match, _ = selectors.item_search(
            tenant=self.tenant,
            query=query.validated_data["q"],
            viewer=viewer,
            include_inactive=include_inactive,
            **filters,
        )
        paginator = PagePagination()
        page = paginator.paginate_queryset(ids, self.request, view=self)
        items = selectors.items_by_ids(tenant=self.tenant, ids=page)
        context = {
            **self.locale_context(),
            "request": self.request,
            "viewer": viewer,
            "currency": self.tenant.currency,
        }
        data = paginator.get_paginated_response(CatalogItemSerializer(items, many=True, context=context).data).data
        return match, data


class StockMovementListCreateApi(CatalogApiBase, ListAPIView):
    rate_limit_scope = "stock"  # POST only: reads are not counted
    queryset = StockMovement.objects.none()  # for the schema; requests use get_queryset
    serializer_class = StockMovementSerializer
    pagination_class = LedgerCursorPagination
    filter_backends = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return StockMovement.objects.none()
        self.check_writer()
        item = selectors.item_get(tenant=self.tenant, item_id=self.kwargs["item_id"])
        return selectors.stock_movement_list(tenant=self.tenant, item=item)

    @extend_schema(summary="An item's stock movements (cursor-paginated, newest first)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Record a stock movement",
        description="RESTOCK adds stock; ADJUST corrects it either way (a count, damage, loss). The "
        "stock never goes below zero (409 `out_of_stock`); an item with unlimited stock has none to "
        "move (409 `stock_not_tracked`).",
        request=StockMovementWriteSerializer,
        responses={201: StockMovementSerializer, **domain_errors(e409="out_of_stock or stock_not_tracked")},
    )
    def post(self, request, item_id):
        self.check_writer()
        item = selectors.item_get(tenant=self.tenant, item_id=item_id)
        serializer = StockMovementWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        change = services.stock_record(
            tenant=self.tenant, item=item, actor=actor_of(request), **serializer.validated_data
        )
        return Response(StockMovementSerializer(change.movement).data, status=201)
