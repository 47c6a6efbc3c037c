import os

from bots.sql.connections import ConnectionCache


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_given_back_connection_is_taken_again() -> None:
    cache: ConnectionCache[FakeConnection] = ConnectionCache()
    first = FakeConnection()

    empty, generation = cache.take("bot-1")
    cache.give("bot-1", first, generation)
    again, _generation = cache.take("bot-1")
    other, _generation = cache.take("bot-2")

    assert (empty, again, other) == (None, first, None)
    assert first.closed is False


def test_idle_connections_beyond_the_limit_are_closed() -> None:
    cache: ConnectionCache[FakeConnection] = ConnectionCache(idle_max=1)
    kept, extra = FakeConnection(), FakeConnection()

    cache.give("bot-1", kept, 0)
    cache.give("bot-1", extra, 0)

    assert (kept.closed, extra.closed) == (False, True)


def test_many_bots_keep_no_more_idle_connections_than_the_total() -> None:
    # A catalogue of many bots would otherwise hold a connection per bot in
    # every process, past what the database server allows.
    cache: ConnectionCache[FakeConnection] = ConnectionCache(idle_total_max=2)
    connections = [FakeConnection() for _ in range(4)]

    for number, connection in enumerate(connections):
        cache.give(f"bot-{number}", connection, 0)

    # the least recently given back were closed
    assert [c.closed for c in connections] == [True, True, False, False]
    assert cache.take("bot-0")[0] is None
    assert cache.take("bot-3")[0] is connections[3]


def test_connections_idle_too_long_are_closed() -> None:
    cache: ConnectionCache[FakeConnection] = ConnectionCache(idle_seconds=0.0)
    stale = FakeConnection()
    cache.give("bot-1", stale, 0)

    taken, _generation = cache.take("bot-1")

    assert taken is None
    assert stale.closed is True


def test_close_all_also_closes_connections_in_use_when_given_back() -> None:
    cache: ConnectionCache[FakeConnection] = ConnectionCache()
    idle, in_use = FakeConnection(), FakeConnection()
    cache.give("bot-1", idle, 0)
    _none, generation = cache.take("bot-2")

    cache.close_all()
    cache.give("bot-2", in_use, generation)

    assert (idle.closed, in_use.closed) == (True, True)
    assert cache.take("bot-2")[0] is None


def test_close_key_closes_only_that_key() -> None:
    cache: ConnectionCache[FakeConnection] = ConnectionCache()
    one, two = FakeConnection(), FakeConnection()
    cache.give("bot-1", one, 0)
    cache.give("bot-2", two, 0)

    cache.close_key("bot-1")

    assert (one.closed, two.closed) == (True, False)


def test_forked_child_neither_reuses_nor_closes_the_parents_connections() -> None:
    cache: ConnectionCache[FakeConnection] = ConnectionCache()
    inherited = FakeConnection()
    cache.give("bot-1", inherited, 0)
    read_end, write_end = os.pipe()

    child = os.fork()
    if child == 0:
        code = 1
        try:
            taken, _generation = cache.take("bot-1")
            cache.close_all()
            os.write(write_end, f"{taken is None} {inherited.closed}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        seen_by_child = pipe.read()
    _pid, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert seen_by_child == "True False"
    assert cache.take("bot-1")[0] is inherited
