"""Insights routes: each part of the context keeps its own routes next to its views."""

from insights.api import exports, program, recommendations, spending

urlpatterns = [
    *spending.urlpatterns,
    *program.urlpatterns,
    *recommendations.urlpatterns,
    *exports.urlpatterns,
]
