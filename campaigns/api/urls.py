from campaigns.api import campaigns, cohorts

urlpatterns = [*campaigns.urlpatterns, *cohorts.urlpatterns]
