from django.contrib.admin import AdminSite
from django.urls import NoReverseMatch, URLPattern, reverse

from bots.studio import (
    check,
    diagram,
    ops,
    transcripts,
    transfer,
    translations,
    try_it,
    versions,
)

PAGES = [check, diagram, try_it, versions, transcripts, translations, ops, transfer]

# The links shown on a bot's change form: (label, URL name under admin:).
LINKS = [
    ("Diagram", "bots_bot_studio_diagram"),
    ("Try it", "bots_bot_studio_try"),
    ("Versions", "bots_bot_studio_versions"),
    ("Tests", "bots_bot_studio_tests"),
    ("Translations", "bots_bot_studio_translations"),
    ("Operations", "bots_bot_studio_ops"),
    ("Export", "bots_bot_studio_export"),
]


def studio_urls(site: AdminSite) -> list[URLPattern]:
    patterns: list[URLPattern] = []
    for page in PAGES:
        patterns.extend(page.urls(site))

    return patterns


def studio_links(bot_id: int) -> list[tuple[str, str]]:
    links = []
    for label, name in LINKS:
        try:
            links.append((label, reverse(f"admin:{name}", args=[bot_id])))
        except NoReverseMatch:
            continue

    return links
