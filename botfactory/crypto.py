"""Symmetric encryption of secrets at rest with rotating Fernet keys."""

from functools import lru_cache

from cryptography.fernet import Fernet as _Fernet
from cryptography.fernet import InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A stored secret cannot be read with any of the configured keys."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_Fernet(key.encode("ascii")) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def secret_encrypt(plain: str) -> str:
    """Encrypt a text with the newest key."""
    return _current().encrypt(plain.encode("utf-8")).decode("ascii")


# Every webhook call reads its bot's token and webhook secrets; a decryption
# costs more than the rest of reading the row. Keyed by the keys as well, so
# a changed key list never serves a value it could not decrypt.
@lru_cache(maxsize=4096)
def _decrypted(keys: tuple[str, ...], token: str) -> str:
    return _fernet(keys).decrypt(token.encode("ascii")).decode("utf-8")


def secret_decrypt(token: str) -> str:
    """Decrypt a text with any configured key; raise DecryptionError if none fits."""
    try:
        return _decrypted(tuple(settings.FIELD_ENCRYPTION_KEYS), token)
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError("No configured key decrypts this value.") from exc


def secret_rotate(token: str) -> str:
    """Re-encrypt a stored value with the newest key; raise DecryptionError."""
    try:
        return _current().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError("No configured key decrypts this value.") from exc


def secret_is_current(token: str) -> bool:
    """Tell whether a stored value is encrypted with the newest key."""
    newest = _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS[:1]))
    try:
        newest.decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False

    return True
