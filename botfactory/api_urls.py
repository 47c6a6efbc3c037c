"""URLs of the REST API and its OpenAPI schema; none ends in a slash."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from bots.apis import (
    BotReloadApi,
    SpecPublishApi,
    TranslationCoverageApi,
    TranslationListApi,
    TranslationSetApi,
    UserDataApi,
)
from bots.apis_schema import SpecSchemaApi

urlpatterns = [
    path("bots/<int:id>/reload", BotReloadApi.as_view(), name="api-bot-reload"),
    path("bots/<int:id>/versions", SpecPublishApi.as_view(), name="api-spec-publish"),
    path("bots/<int:id>/i18n", TranslationListApi.as_view(), name="api-translations"),
    path(
        "bots/<int:id>/i18n/coverage",
        TranslationCoverageApi.as_view(),
        name="api-translation-coverage",
    ),
    path(
        "bots/<int:id>/i18n/<str:locale>/<str:key>",
        TranslationSetApi.as_view(),
        name="api-translation",
    ),
    path(
        "bots/<int:id>/users/<str:telegram_user_id>/data",
        UserDataApi.as_view(),
        name="api-user-data",
    ),
    path("api/spec-schema", SpecSchemaApi.as_view(), name="api-spec-schema"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs",
        SpectacularSwaggerView.as_view(url_name="api-schema"),
        name="api-docs",
    ),
]
