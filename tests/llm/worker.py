"""A helper process for tests: one ``complete`` call, started on a signal.

``python -m tests.llm.worker --question Q --deadline S [--ttl T]
--ready KEY --go KEY`` sets Django up, adds one to the Redis counter
``KEY`` named by ``--ready``, waits until the key named by ``--go`` exists
(so that every helper calls at the same moment), calls ``complete`` and
prints one JSON line: ``{"ok", "text", "cached", "code"}``. Keys are raw
Redis keys, named by the test.
"""

import argparse
import json
import os
import sys
import time

WAIT_FOR_GO_SECONDS = 60.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--question", required=True)
    parser.add_argument("--deadline", type=float, required=True)
    parser.add_argument("--ttl", type=int, default=0)
    parser.add_argument("--ready")
    parser.add_argument("--go")
    args = parser.parse_args()

    import django

    django.setup()
    import redis

    from llm.errors import LlmUnavailableError
    from llm.services import complete
    from llm.types import ChatMessage, CompletionRequest

    if args.ready and args.go:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        client.incr(args.ready)
        ends = time.monotonic() + WAIT_FOR_GO_SECONDS
        while not client.exists(args.go):
            if time.monotonic() > ends:
                print(json.dumps({"ok": False, "code": "no_go"}), flush=True)
                return 1
            time.sleep(0.005)

    request = CompletionRequest(
        messages=(ChatMessage(role="user", content=args.question),),
        cache_ttl_seconds=args.ttl,
    )
    try:
        completion = complete(request, deadline_seconds=args.deadline)
    except LlmUnavailableError as exc:
        print(json.dumps({"ok": False, "code": exc.code}), flush=True)
        return 0

    result = {"ok": True, "text": completion.text, "cached": completion.cached}
    print(json.dumps(result), flush=True)

    return 0


if __name__ == "__main__":
    sys.exit(main())
