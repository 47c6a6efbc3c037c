from django.db import migrations

import botfactory.fields


class Migration(migrations.Migration):
    dependencies = [
        ("bots", "0002_llm_request"),
    ]

    operations = [
        migrations.AddField(
            model_name="bot",
            name="webhook_secret_previous",
            field=botfactory.fields.EncryptedTextField(
                blank=True, editable=False, verbose_name="previous webhook secret"
            ),
        ),
    ]
