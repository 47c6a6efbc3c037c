import django.utils.timezone
from django.db import migrations, models
from django.db.models import F


def text_changed_at_fill(apps, schema_editor):
    # The last save is the best known time the text changed; it never makes
    # a translation look newer than its source was when it was written.
    Translation = apps.get_model("i18n", "Translation")
    Translation.objects.update(text_changed_at=F("updated_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("i18n", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="translation",
            name="text_changed_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now, verbose_name="text changed at"
            ),
        ),
        migrations.RunPython(text_changed_at_fill, migrations.RunPython.noop),
    ]
