"""The demo café written by hand with aiogram 3: the webhook benchmark's peer.

As an aiogram user would write it: one Dispatcher with a Router, an FSM
StatesGroup for the order, Redis FSM storage, aiohttp webhooks (one
``SimpleRequestHandler`` per bot, handling each update before its 200) and
replies sent through the Bot API. Orders go to a Redis list.

It reads the callback data the benchmark's generator sends, which is the
shape BotFactory writes (``<generation>:<node>:<step>:<token>``); it ignores
the generation and checks node and step against the FSM state.

Runs in its own virtual environment (bench/peers/.venv), under gunicorn:
``gunicorn -k aiohttp.GunicornWebWorker bench.peers.aiogram_cafe:app_create``.
Environment: PEER_TELEGRAM_URL, PEER_REDIS_URL, PEER_KEY_PREFIX, PEER_SECRET,
PEER_BOTS (how many bots), PEER_TOKEN_SECRET (the tokens' secret part).
"""

import json
import logging
import os
from pathlib import Path

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from redis.asyncio import Redis

logger = logging.getLogger(__name__)

TRANSLATIONS = (
    Path(__file__).resolve().parents[2] / "bots" / "demo" / "translations.json"
)
DRINKS = ("latte", "cappuccino", "americano", "tea")
SIZES = ("small", "medium", "large")
BACK, SKIP, CANCEL = "« Back", "Skip »", "✖ Cancel"

router = Router()
redis_client: Redis


class Order(StatesGroup):
    drink = State()
    size = State()
    quantity = State()
    name = State()
    phone = State()


def _texts() -> dict[str, str]:
    english = json.loads(TRANSLATIONS.read_text(encoding="utf-8"))["en"]

    return {
        key: value["other"] if isinstance(value, dict) else value
        for key, value in english.items()
    }


T = _texts()


def _data(node: str, step: int, token: str) -> str:
    return f"0:{node}:{step}:{token}"


def _parse(data: str | None) -> tuple[str, int, str] | None:
    parts = (data or "").split(":")
    if len(parts) != 4 or not parts[2].isdigit():
        return None

    return parts[1], int(parts[2], 36), parts[3]


def _main_menu() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=T["main.order"], callback_data=_data("main", 0, "order")
                )
            ],
            [
                InlineKeyboardButton(
                    text=T["main.orders"], callback_data=_data("main", 0, "orders")
                ),
                InlineKeyboardButton(
                    text=T["main.help"], callback_data=_data("main", 0, "help")
                ),
            ],
        ]
    )


def _choices(step: int, values: tuple[str, ...], prefix: str, columns: int, back: bool):
    buttons = [
        InlineKeyboardButton(
            text=T[f"{prefix}.{value}"], callback_data=_data("order", step, f"o{value}")
        )
        for value in values
    ]
    rows = [buttons[i : i + columns] for i in range(0, len(buttons), columns)]
    controls = (
        [InlineKeyboardButton(text=BACK, callback_data=_data("order", step, "k"))]
        if back
        else []
    )
    controls.append(
        InlineKeyboardButton(text=CANCEL, callback_data=_data("order", step, "x"))
    )

    return InlineKeyboardMarkup(inline_keyboard=[*rows, controls])


def _controls(step: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=BACK, callback_data=_data("order", step, "k")
                ),
                InlineKeyboardButton(
                    text=CANCEL, callback_data=_data("order", step, "x")
                ),
            ]
        ]
    )


async def _show_menu(message: Message, first_name: str) -> None:
    await message.answer(
        T["main.text"].format(first_name=first_name), reply_markup=_main_menu()
    )


@router.message(CommandStart())
async def start(message: Message, state: FSMContext) -> None:
    await state.clear()
    await _show_menu(message, message.from_user.first_name if message.from_user else "")


@router.callback_query(F.data.func(lambda data: (_parse(data) or ("",))[0] == "main"))
async def main_press(query: CallbackQuery, state: FSMContext) -> None:
    parsed = _parse(query.data)
    token = parsed[2] if parsed else ""
    message = query.message
    await query.answer()
    if not isinstance(message, Message):
        return
    if token == "order":
        await state.set_state(Order.drink)
        await message.answer(
            T["order.drink"], reply_markup=_choices(0, DRINKS, "drink", 2, False)
        )
    elif token == "help":
        await message.answer(T["help.text"])
    elif token == "orders":
        orders = await redis_client.lrange(_orders_key(query.from_user.id), 0, 4)
        if not orders:
            await message.answer(T["orders.none"])
            return
        lines = [T["orders.title"]]
        for number, raw in enumerate(orders, 1):
            order = json.loads(raw)
            lines.append(
                T["orders.item"].format(
                    id=number,
                    drink=T[f"drink.{order['drink']}"],
                    size=T[f"size.{order['size']}"],
                    count=order["quantity"],
                )
            )
        await message.answer("\n".join(lines))


@router.callback_query(Order.drink)
async def drink_press(query: CallbackQuery, state: FSMContext) -> None:
    parsed = _parse(query.data)
    if parsed is None or parsed[:2] != ("order", 0) or parsed[2][1:] not in DRINKS:
        await query.answer(
            T.get("bf.button_inactive", "This button is no longer active.")
        )
        return
    await query.answer()
    await state.update_data(drink=parsed[2][1:])
    await state.set_state(Order.size)
    if isinstance(query.message, Message):
        await query.message.answer(
            T["order.size"], reply_markup=_choices(1, SIZES, "size", 3, True)
        )


@router.callback_query(Order.size)
async def size_press(query: CallbackQuery, state: FSMContext) -> None:
    parsed = _parse(query.data)
    if parsed is None or parsed[:2] != ("order", 1) or parsed[2][1:] not in SIZES:
        await query.answer(
            T.get("bf.button_inactive", "This button is no longer active.")
        )
        return
    await query.answer()
    await state.update_data(size=parsed[2][1:])
    await state.set_state(Order.quantity)
    if isinstance(query.message, Message):
        await query.message.answer(T["order.quantity"], reply_markup=_controls(2))


@router.message(Order.quantity)
async def quantity_answer(message: Message, state: FSMContext) -> None:
    text = (message.text or "").strip()
    if not text.isdigit() or not 1 <= int(text) <= 10:
        await message.answer(
            f"{T['order.quantity_invalid']}\n\n{T['order.quantity']}",
            reply_markup=_controls(2),
        )
        return
    await state.update_data(quantity=int(text))
    await state.set_state(Order.name)
    await message.answer(T["order.name"], reply_markup=_controls(3))


@router.message(Order.name)
async def name_answer(message: Message, state: FSMContext) -> None:
    name = (message.text or "").strip()
    if not 1 <= len(name) <= 40:
        await message.answer(T["order.name"], reply_markup=_controls(3))
        return
    await state.update_data(name=name)
    await state.set_state(Order.phone)
    keyboard = ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text="📱 Share my phone number", request_contact=True)],
            [
                KeyboardButton(text=BACK),
                KeyboardButton(text=SKIP),
                KeyboardButton(text=CANCEL),
            ],
        ],
        resize_keyboard=True,
        one_time_keyboard=True,
    )
    await message.answer(T["order.phone"], reply_markup=keyboard)


@router.message(Order.phone)
async def phone_answer(message: Message, state: FSMContext) -> None:
    phone = message.contact.phone_number if message.contact else None
    if phone is None and (message.text or "").strip() != SKIP:
        await message.answer(T["order.phone"])
        return
    order = {**await state.get_data(), "phone": phone}
    user_id = message.from_user.id if message.from_user else 0
    await redis_client.lpush(_orders_key(user_id), json.dumps(order))
    await state.clear()
    done = T["order.done"].format(
        name=order["name"],
        drink=T[f"drink.{order['drink']}"],
        size=T[f"size.{order['size']}"],
        count=order["quantity"],
    )
    await message.answer(done, reply_markup=ReplyKeyboardRemove())
    await _show_menu(message, message.from_user.first_name if message.from_user else "")


def _orders_key(user_id: int) -> str:
    return f"{os.environ['PEER_KEY_PREFIX']}:orders:{user_id}"


async def app_create() -> web.Application:
    """Build the aiohttp application serving every bot's webhook."""
    global redis_client
    prefix = os.environ["PEER_KEY_PREFIX"]
    redis_client = Redis.from_url(os.environ["PEER_REDIS_URL"])
    storage = RedisStorage(
        redis_client, key_builder=DefaultKeyBuilder(prefix=f"{prefix}:fsm")
    )
    dispatcher = Dispatcher(storage=storage)
    dispatcher.include_router(router)
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(os.environ["PEER_TELEGRAM_URL"])
    )
    properties = DefaultBotProperties(parse_mode="HTML")
    secret = os.environ["PEER_SECRET"]
    token_secret = os.environ["PEER_TOKEN_SECRET"]

    app = web.Application()
    bots = []
    for number in range(1, int(os.environ["PEER_BOTS"]) + 1):
        bot = Bot(
            token=f"{100000 + number}:{token_secret}",
            session=session,
            default=properties,
        )
        bots.append(bot)
        # Handled before the 200, not aiogram's default of answering first:
        # otherwise a chat's next update overtakes the one before it (a
        # press lands before the state that makes it valid) and the flow
        # breaks.
        SimpleRequestHandler(
            dispatcher=dispatcher,
            bot=bot,
            secret_token=secret,
            handle_in_background=False,
        ).register(app, path=f"/telegram/{number}/webhook")
    app.router.add_get("/health", _health)
    setup_application(app, dispatcher, bots=bots)

    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
