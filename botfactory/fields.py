from typing import Any

from django.db import models

from botfactory.crypto import secret_decrypt, secret_encrypt


class EncryptedTextField(models.TextField):
    """A text stored encrypted with ``FIELD_ENCRYPTION_KEYS``; empty stays empty."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        if not value:
            return ""

        return secret_decrypt(value)

    def get_prep_value(self, value: Any) -> str:
        value = super().get_prep_value(value)
        if not value:
            return ""

        return secret_encrypt(str(value))
