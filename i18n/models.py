from collections.abc import Collection, Iterable
from typing import Any, Self

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from i18n.locales import LOCALE_MAX_LENGTH
from i18n.validation import KEY_MAX_LENGTH, KEY_RE, validate_locale_tag

# What a row read without its forms (``only()``, ``defer()``) remembers.
_FORMS_NOT_LOADED = object()


class Translation(models.Model):
    """The text of one key in one locale of one bot, by plural category.

    ``forms`` maps CLDR plural categories (``one``, ``few``, ``many``,
    ``other``, ...) to patterns with ``{name}`` placeholders; a text without
    plural forms is stored as ``{"other": text}``.

    ``text_changed_at`` moves only when ``forms`` really changes (re-saving
    the same text leaves it), so that a translation whose source text moved
    after it can be told outdated.
    """

    bot = models.ForeignKey(
        "bots.Bot",
        verbose_name=_("bot"),
        on_delete=models.CASCADE,
        related_name="translations",
        # The unique constraint's index starts with the bot and serves its
        # lookups; a second index on the bot alone would only cost writes.
        db_index=False,
    )
    locale = models.CharField(
        _("locale"),
        max_length=LOCALE_MAX_LENGTH,
        validators=[validate_locale_tag],
        help_text=_("Lowercase BCP 47 tag: uk, pt-br, zh-hans."),
    )
    key = models.CharField(
        _("key"),
        max_length=KEY_MAX_LENGTH,
        validators=[
            RegexValidator(
                rf"\A{KEY_RE.pattern}\Z",
                _("Use dotted identifiers such as menu.title."),
            )
        ],
    )
    forms = models.JSONField(
        _("forms"),
        help_text=_("Plural category (one, few, many, other) to text."),
    )
    text_changed_at = models.DateTimeField(_("text changed at"), default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The forms as read from the database, to tell a real change of text.
    _loaded_forms: Any

    class Meta:
        verbose_name = _("translation")
        verbose_name_plural = _("translations")
        ordering = ["locale", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "locale", "key"], name="translation_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.locale}: {self.key}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Every path that saves one row (the admin, update_or_create) passes
        # here; bulk writes set text_changed_at themselves.
        loaded = getattr(self, "_loaded_forms", _FORMS_NOT_LOADED)
        changed = loaded is not _FORMS_NOT_LOADED and self.forms != loaded
        if not self._state.adding and changed:
            self.text_changed_at = timezone.now()
            update_fields: Iterable[str] | None = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "text_changed_at"}
        super().save(*args, **kwargs)
        self._loaded_forms = self.forms

    @classmethod
    def from_db(
        cls,
        db: str | None,
        field_names: Collection[str],
        values: Collection[Any],
        **kwargs: Any,
    ) -> Self:
        translation = super().from_db(db, field_names, values, **kwargs)
        translation._loaded_forms = translation.__dict__.get("forms", _FORMS_NOT_LOADED)

        return translation
