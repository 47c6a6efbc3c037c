from celery import shared_task

from bots.services.outbox import outbox_chat_drain, outbox_sweep


@shared_task(name="bots.outbox_send", ignore_result=True)
def outbox_send_task(bot_id: int, chat_id: int) -> int:
    return outbox_chat_drain(bot_id=bot_id, chat_id=chat_id)


@shared_task(name="bots.outbox_sweep", ignore_result=True)
def outbox_sweep_task() -> int:
    return outbox_sweep()
