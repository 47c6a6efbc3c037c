"""What the fake HTTP APIs share: a threaded server that carries the fake's
state, a request handler base, a background-thread runner and the
command-line loop that prints the address it listens on."""

import logging
import select
import signal
import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Generic, Self, TypeVar

logger = logging.getLogger(__name__)

LISTENING_PREFIX = "listening on "

StateT = TypeVar("StateT")


class FakeHttpServer(ThreadingHTTPServer, Generic[StateT]):
    """A threaded HTTP server whose handlers reach the fake's ``state``."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        state: StateT,
    ) -> None:
        self.state = state
        super().__init__(address, handler)


class FakeHandler(BaseHTTPRequestHandler):
    """Keep-alive JSON answers; every GET, POST and DELETE goes to ``_dispatch``."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the
    # second waits for the client's delayed ACK, about 40 ms per call.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        raise NotImplementedError

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _client_left(self) -> bool:
        """Tell whether the client closed its side of the connection."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send_body(
        self, status: int, data: bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client gave up before the answer (a delayed fault).
            self.close_connection = True


class BackgroundServer:
    """A fake served from a background thread of this process."""

    thread_name = "fake-api"

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self._httpd = httpd
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()

        return self

    def stop(self) -> None:
        self._let_go()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def _let_go(self) -> None:
        """Let requests held open go, so that the shutdown need not wait."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_until_signalled(server: BackgroundServer) -> None:
    """Serve ``server`` until SIGTERM or SIGINT, printing where it listens."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    server.start()
    print(f"{LISTENING_PREFIX}{server.url}", flush=True)
    while not stopping.wait(0.2):
        pass
    server.stop()
