"""The Redis broker transport, kept alive through a lost connection.

When a Celery worker (5.7) loses Redis it detaches the transport from the
connection and only then closes the channels. Closing a channel that holds
unacknowledged messages (every task running at that moment, since tasks
acknowledge late) tries to give them back through the detached transport,
raises AttributeError, and the worker takes that for an unrecoverable error
and exits: a Redis restart stopped every worker that was busy. Here that
attempt raises the connection error it stands for, which the close ignores,
so the worker reconnects once Redis is back. The messages it could not give
back are in Redis's own unacknowledged set (restored after the visibility
timeout) or were lost with Redis, and the sweeps re-enqueue their work.
"""

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("The broker connection is closed.")

        # Not in the type stubs, which cover kombu's public API only.
        params = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]

        return dict(params)


class Transport(kombu_redis.Transport):
    Channel = Channel
