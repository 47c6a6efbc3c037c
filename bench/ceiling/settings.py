"""Settings of the ceiling: Django with one view and nothing else.

It measures what the web server and Django alone cost per webhook call, so
that the product's own cost can be told from theirs. Not part of the
product: no apps, no middleware, no database.
"""

import os

SECRET_KEY = os.environ.get("SECRET_KEY", "") or "ceiling-bench-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.ceiling.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
