"""Webhook load that behaves as Telegram does when the answer is not a 2xx.

Each chat is a thread that posts its updates one at a time, in order, and
delivers the same ``update_id`` again (after ``retry_seconds``) until it is
answered 200; only then does it post the chat's next update. Every answer is
recorded with its start and end on the monotonic clock, so a test can pick
the answers of an outage window and measure the time to the first refusal
and to recovery.
"""

import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram backs off for much longer; a test compresses its wait.
RETRY_SECONDS = 0.2
# How long a chat keeps re-delivering one update before it counts as lost.
GIVE_UP_SECONDS = 60.0

_first_ids = itertools.count(900_000_000, 1_000_000)


@dataclass(frozen=True)
class Delivery:
    """One POST of one update and what it got back."""

    update_id: int
    chat_id: int
    started: float
    ended: float
    # 0 when no HTTP answer came back (refused, reset, timed out).
    status: int
    code: str | None
    # Sent again after a 200, as Telegram does when it missed the answer.
    is_repeat: bool = False

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def update_body(*, update_id: int, chat_id: int, text: str) -> dict[str, Any]:
    """Return a private-chat text message update of Telegram's shape."""
    sender = {"id": chat_id, "is_bot": False, "first_name": "Ann"}
    message = {
        "message_id": update_id % 1_000_000,
        "date": 1767261600,
        "chat": {"id": chat_id, "type": "private"},
        "from": {**sender, "language_code": "en"},
        "text": text,
    }

    return {"update_id": update_id, "message": message}


@dataclass
class RedeliveringSender:
    """Chats posting ``text`` over and over to one bot's webhook.

    ``repeat_every``: every n-th accepted update of a chat is delivered once
    more after its 200 (0: never), so duplicate detection is exercised too.
    """

    url: str
    bot_id: int
    secret: str
    chat_ids: list[int]
    text: str
    pause_seconds: float = 0.0
    repeat_every: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    accepted: dict[int, list[int]] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(next(_first_ids)))

    def _post(
        self, http: httpx.Client, *, update_id: int, chat_id: int, is_repeat: bool
    ) -> Delivery:
        body = update_body(update_id=update_id, chat_id=chat_id, text=self.text)
        started = time.monotonic()
        try:
            response = http.post(
                f"/telegram/{self.bot_id}/webhook",
                content=json.dumps(body),
                headers={
                    "Content-Type": "application/json",
                    SECRET_HEADER: self.secret,
                },
            )
            status = response.status_code
            code = None if status == 200 else response.json().get("code")
        except httpx.TransportError:
            status, code = 0, None
        delivery = Delivery(
            update_id=update_id,
            chat_id=chat_id,
            started=started,
            ended=time.monotonic(),
            status=status,
            code=code,
            is_repeat=is_repeat,
        )
        with self._lock:
            self.deliveries.append(delivery)

        return delivery

    def _deliver(self, http: httpx.Client, *, update_id: int, chat_id: int) -> bool:
        """Post one update until it is answered 200; False if it never is."""
        first = time.monotonic()
        while time.monotonic() - first < GIVE_UP_SECONDS:
            answer = self._post(
                http, update_id=update_id, chat_id=chat_id, is_repeat=False
            )
            if answer.status == 200:
                return True
            time.sleep(RETRY_SECONDS)

        return False

    def _chat(self, chat_id: int) -> None:
        accepted = self.accepted.setdefault(chat_id, [])
        with httpx.Client(base_url=self.url, timeout=30.0) as http:
            while not self._stopping.is_set():
                with self._lock:
                    update_id = next(self._ids)
                if not self._deliver(http, update_id=update_id, chat_id=chat_id):
                    with self._lock:
                        self.lost.append(update_id)
                    continue
                accepted.append(update_id)
                if self.repeat_every and len(accepted) % self.repeat_every == 0:
                    self._post(
                        http, update_id=update_id, chat_id=chat_id, is_repeat=True
                    )
                time.sleep(self.pause_seconds)

    def start(self) -> None:
        for chat_id in self.chat_ids:
            thread = threading.Thread(target=self._chat, args=(chat_id,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Let each chat finish the update it is delivering, then stop."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=GIVE_UP_SECONDS + 30.0)
            assert not thread.is_alive(), "a chat never finished its update"

    def between(self, start: float, end: float) -> list[Delivery]:
        """Return the deliveries that began after ``start`` and ended by ``end``."""
        return [d for d in self.deliveries if d.started >= start and d.ended <= end]

    def statuses(self) -> Counter[tuple[int, str | None]]:
        return Counter((d.status, d.code) for d in self.deliveries)

    def accepted_ids(self) -> list[int]:
        return sorted(uid for ids in self.accepted.values() for uid in ids)

    def repeats(self) -> int:
        return sum(1 for d in self.deliveries if d.is_repeat)

    def first_after(self, moment: float, *, status: int) -> float | None:
        """Return how long after ``moment`` the first answer ``status`` ended."""
        ends = [
            d.ended for d in self.deliveries if d.status == status and d.ended > moment
        ]

        return min(ends) - moment if ends else None
