"""A separate process that answers ``translator_get`` calls, one per line.

Each request line is JSON with ``bot_id``, ``revision``, ``locale`` and
``key``; each answer line is JSON with the pattern and the number of queries
the call made, so a test can tell a cache hit from a database read.
"""

import json
import sys

import django


def main() -> None:
    django.setup()

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from i18n.selectors import translator_get

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        with CaptureQueriesContext(connection) as queries:
            translator = translator_get(
                bot_id=request["bot_id"],
                revision=request["revision"],
                locale=request["locale"],
                default_locale="en",
            )
        answer = {
            "pattern": translator.pattern(request["key"]),
            "queries": len(queries),
        }
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
