"""Read deploy-specific settings from the environment.

Each helper fails at start-up with a message naming the variable when the
value is malformed, so a typo never turns into a silent default.
"""

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None

    return value.strip()


def env_str(name: str, default: str | None = None) -> str | None:
    """Return the variable's text, or ``default`` when it is unset or empty."""
    value = _raw(name)

    return value if value else default


def env_secret(name: str) -> str | None:
    """Return a secret from ``NAME`` or from the file that ``NAME_FILE`` names.

    Raises ImproperlyConfigured when both are set or the file is unreadable.
    """
    value = env_str(name)
    path = env_str(f"{name}_FILE")
    if value and path:
        raise ImproperlyConfigured(f"Set either {name} or {name}_FILE, not both.")
    if not path:
        return value

    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{name}_FILE points to a file that cannot be read ({exc.strerror})."
        ) from exc

    return text or None


def env_bool(name: str, default: bool = False) -> bool:
    """Return a boolean; raise ImproperlyConfigured for anything but yes/no words."""
    value = _raw(name)
    if value is None:
        return default

    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False if value else default
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {value!r}."
    )


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """Return an integer not below ``minimum``; raise ImproperlyConfigured otherwise."""
    value = _raw(name)
    if not value:
        return default

    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be an integer; got {value!r}."
        ) from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {number}.")

    return number


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """Return a number not below ``minimum``; raise ImproperlyConfigured otherwise."""
    value = _raw(name)
    if not value:
        return default

    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number; got {value!r}.") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {number}.")

    return number


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Return a comma-separated list with blanks dropped."""
    value = _raw(name)
    if value is None:
        return list(default or [])

    return _split(value)


def env_networks(name: str) -> list[str]:
    """Return a comma-separated list of IP addresses and CIDR blocks.

    Raises ImproperlyConfigured naming the first item that is neither.
    """
    values = env_list(name)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must list IP addresses or CIDR blocks; got {value!r}."
            ) from None

    return values


def env_secret_list(name: str) -> list[str]:
    """Return a comma-separated list of secrets from ``NAME`` or ``NAME_FILE``.

    Raises ImproperlyConfigured as ``env_secret`` does.
    """
    return _split(env_secret(name) or "")


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """Return one of ``choices``, ignoring case; raise ImproperlyConfigured if not."""
    value = _raw(name)
    if not value:
        return default

    lowered = value.lower()
    if lowered not in choices:
        raise ImproperlyConfigured(
            f"{name} must be one of {', '.join(choices)}; got {value!r}."
        )

    return lowered


def env_url(
    name: str, default: str | None = None, *, schemes: tuple[str, ...]
) -> str | None:
    """Return a URL without its trailing slash; raise ImproperlyConfigured if malformed.

    The value may carry credentials, so the error message never repeats it.
    """
    value = env_secret(name) if name.endswith("_URL") else env_str(name)
    if not value:
        return default

    try:
        parts = urlsplit(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} is not a valid URL.") from None
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        starts = [f"{scheme}://" for scheme in schemes]
        listed = ", ".join(starts[:-1]) + " or " if len(starts) > 1 else ""
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with {listed}{starts[-1]}."
        )
    if parts.scheme in {"http", "https"} and not parts.hostname:
        raise ImproperlyConfigured(f"{name} must name a host.")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a malformed port.") from None

    return value.rstrip("/")
