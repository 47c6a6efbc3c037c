from celery import Task, shared_task

from bots.services.lifecycle import data_prune
from bots.services.llm import llm_answer, llm_sweep
from bots.services.outbox import outbox_chat_drain, outbox_ready_drain, outbox_sweep


@shared_task(name="bots.outbox_send", ignore_result=True)
def outbox_send_task(bot_id: int, chat_id: int) -> int:
    return outbox_chat_drain(bot_id=bot_id, chat_id=chat_id)


@shared_task(name="bots.outbox_drain", ignore_result=True)
def outbox_drain_task(slot: int) -> int:
    return outbox_ready_drain(slot=slot)


@shared_task(name="bots.outbox_sweep", ignore_result=True)
def outbox_sweep_task() -> int:
    return outbox_sweep()


@shared_task(
    name="bots.llm_answer",
    bind=True,
    ignore_result=True,
    # A worker lost mid-call gives the task back to the broker; the request's
    # lease and its open status keep the rerun from answering twice.
    acks_late=True,
    reject_on_worker_lost=True,
)
def llm_answer_task(self: Task, request_id: int) -> str:
    return llm_answer(request_id=request_id, task_id=self.request.id or "")


@shared_task(name="bots.llm_sweep", ignore_result=True)
def llm_sweep_task() -> int:
    return llm_sweep()


@shared_task(name="bots.data_prune", ignore_result=True)
def data_prune_task() -> dict[str, int]:
    return data_prune().as_dict()
