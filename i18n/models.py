from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from i18n.locales import LOCALE_MAX_LENGTH
from i18n.validation import KEY_MAX_LENGTH, KEY_RE, validate_locale_tag


class Translation(models.Model):
    """The text of one key in one locale of one bot, by plural category.

    ``forms`` maps CLDR plural categories (``one``, ``few``, ``many``,
    ``other``, ...) to patterns with ``{name}`` placeholders; a text without
    plural forms is stored as ``{"other": text}``.
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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

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
