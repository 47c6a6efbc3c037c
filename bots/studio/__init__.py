"""The admin's bot studio: the pages beside a bot's change form.

Each module holds one page's views and a ``urls(site)`` function; the bot
admin mounts them under ``/admin/bots/bot/<bot_id>/studio/``. Views are
thin: they check the member of staff's access to the bot, call a service
and render a template under ``templates/studio/``.
"""
