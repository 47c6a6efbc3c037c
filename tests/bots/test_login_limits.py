from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db.models import F
from django.test import Client

PASSWORD = "correct-horse-battery-staple-7"
LOGIN_URL = "/admin/login/?next=/admin/"
LOCKED_TEXT = (
    "This account cannot log in from your address after 5 failed attempts in a row."
)


@pytest.fixture
def staff(db: None, settings: Any) -> AbstractUser:
    # Each attempt checks a password; the default hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user: AbstractUser = get_user_model().objects.create_user(
        username="editor", password=PASSWORD, is_staff=True
    )

    return user


def _login(username: str, password: str, *, address: str = "203.0.113.7") -> Any:
    client = Client(REMOTE_ADDR=address)

    return client.post(LOGIN_URL, {"username": username, "password": password})


def _logged_in(response: Any) -> bool:
    return bool(response.status_code == 302 and response["Location"] == "/admin/")


def _statuses(username: str, password: str, times: int, **kwargs: Any) -> list[int]:
    return [_login(username, password, **kwargs).status_code for _ in range(times)]


def test_the_fifth_failure_locks_the_username_from_that_address(
    staff: AbstractUser,
) -> None:
    typed = "guessed-Passw0rd-number-one"
    failures = _statuses("editor", typed, 4)

    locking = _login("editor", typed)
    with_the_right_password = _login("editor", PASSWORD)

    assert failures == [200, 200, 200, 200]
    assert locking.status_code == 429
    assert with_the_right_password.status_code == 429
    page = with_the_right_password.content.decode()
    assert LOCKED_TEXT in page
    assert "Try again in 15 minutes" in page
    assert PASSWORD not in page
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address) == ("editor", "203.0.113.7")
    assert attempt.failures_since_start == 6
    assert typed not in attempt.post_data
    assert PASSWORD not in attempt.post_data


def test_a_lockout_holds_only_that_username_at_that_address(
    staff: AbstractUser,
) -> None:
    get_user_model().objects.create_user(
        username="other", password=PASSWORD, is_staff=True
    )
    _statuses("editor", "wrong", 5)

    assert _logged_in(_login("editor", PASSWORD, address="198.51.100.9"))
    assert _logged_in(_login("other", PASSWORD))
    assert _login("editor", PASSWORD).status_code == 429


def test_a_success_starts_the_count_again(staff: AbstractUser) -> None:
    before = _statuses("editor", "wrong", 4)

    success = _login("editor", PASSWORD)
    after = _statuses("editor", "wrong", 4)

    assert before == after == [200, 200, 200, 200]
    assert _logged_in(success)
    assert _logged_in(_login("editor", PASSWORD))


def test_the_lockout_ends_after_the_cool_off(
    staff: AbstractUser, settings: Any
) -> None:
    _statuses("editor", "wrong", 5)
    locked = _login("editor", PASSWORD)

    # As if the cool-off had passed since the last failure.
    AccessAttempt.objects.update(
        attempt_time=F("attempt_time")
        - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )

    assert locked.status_code == 429
    assert _logged_in(_login("editor", PASSWORD))
    assert AccessAttempt.objects.count() == 0


def test_the_limit_and_the_cool_off_are_settings(
    staff: AbstractUser, settings: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)

    statuses = _statuses("editor", "wrong", 2)
    page = _login("editor", PASSWORD).content.decode()

    assert statuses == [200, 429]
    assert "after 2 failed attempts in a row." in page
    assert "Try again in 1 minute;" in page
