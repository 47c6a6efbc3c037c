-- wrk script: private chats with the demo café bot, played in order.
--
-- Run with one connection per thread (-t N -c N): wrk gives a script no
-- handle on connections, but with one per thread each response() belongs
-- to the request() before it, so every chat sends its next update only
-- after the last one was answered, as a user does.
--
-- Arguments after "--": bot ids (comma-separated), the first chat index,
-- chats per connection, then the callback tokens of the main menu's
-- "order", "orders" and "help" buttons (the runtime's own button_token of
-- each, computed by the runner from the spec). The environment holds the
-- webhook secret (BENCH_SECRET) and, to pace the connections so that
-- together they send about that many updates a second, BENCH_PACE_RPS and
-- BENCH_CONNECTIONS.

local ffi = require("ffi")

ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } bench_timeval;
  int gettimeofday(bench_timeval *tv, void *tz);
]]

local CHAT_ID_BASE = 700000000
-- A chat sends far fewer updates than this in a run.
local UPDATES_PER_CHAT = 100000
local DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
local DRINKS = { "latte", "cappuccino", "americano", "tea" }
local SIZES = { "small", "medium", "large" }
-- The label of the phone step's skip button, as the demo bot sends it.
local SKIP_LABEL = "Skip \194\187"

local threads = {}

local function base36(number)
  if number == 0 then
    return "0"
  end
  local out = ""
  while number > 0 do
    local digit = number % 36
    out = DIGITS:sub(digit + 1, digit + 1) .. out
    number = (number - digit) / 36
  end
  return out
end

-- The callback data the runtime writes (dsl/callback.py), private chats.
local function callback_data(generation, node, step, token)
  return base36(generation) .. ":" .. node .. ":" .. base36(step) .. ":" .. token
end

local function split(text, separator)
  local parts = {}
  for part in string.gmatch(text, "([^" .. separator .. "]+)") do
    parts[#parts + 1] = part
  end
  return parts
end

local function now_ms()
  local tv = ffi.new("bench_timeval")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(char)
    return string.format("\\u%04x", char:byte())
  end) .. '"'
end

-- One cycle of a chat. gen: generations the runtime adds (a node entry
-- each, see dsl/turn.py); calls: Bot API calls it makes (a message each,
-- an answerCallbackQuery per press); menu: a main menu was sent.
-- Per four cycles: 8 /start, 20 presses, 12 wizard answers, 1 invalid.
local function cycle_steps(chat)
  local n = chat.index + chat.cycle
  local steps = {
    { kind = "command", text = "/start", gen = 1, calls = 1, menu = true },
    { kind = "menu", token = "order", gen = 1, calls = 2 },
    { kind = "wizard", step = 0, token = "o" .. DRINKS[n % 4 + 1], gen = 0, calls = 2 },
    { kind = "wizard", step = 1, token = "o" .. SIZES[n % 3 + 1], gen = 0, calls = 2 },
  }
  if chat.cycle % 4 == 3 then
    steps[#steps + 1] = { kind = "text", text = "lots", gen = 0, calls = 1 }
  end
  local rest = {
    { kind = "text", text = tostring(n % 10 + 1), gen = 0, calls = 1 },
    { kind = "text", text = "Guest " .. chat.index, gen = 0, calls = 1 },
    -- save_order, order_done, main: a thank-you and the menu.
    { kind = "text", text = SKIP_LABEL, gen = 3, calls = 2, menu = true },
    { kind = "command", text = "/start", gen = 1, calls = 1, menu = true },
    { kind = "menu", token = "help", gen = 1, calls = 2 },
    -- my_orders, orders_list; the start node rests without an entry.
    { kind = "menu", token = "orders", gen = 2, calls = 2 },
  }
  for _, step in ipairs(rest) do
    steps[#steps + 1] = step
  end
  return steps
end

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  bots = split(args[1], ",")
  secret = os.getenv("BENCH_SECRET") or ""
  local first_chat = tonumber(args[2])
  local per_connection = tonumber(args[3])
  tokens = { order = args[4], orders = args[5], help = args[6] }
  chats = {}
  -- What done() reads: wrk copies only flat tables between threads.
  rows = {}
  -- The update sent and not yet answered 200: its chat, what that chat
  -- should show if it was processed, and the request's path and body.
  flight = { chat = 0, calls = -1, generation = -1, path = "", body = "" }
  for n = 1, per_connection do
    local index = first_chat + thread_index * per_connection + (n - 1)
    local chat = {
      index = index,
      id = CHAT_ID_BASE + index,
      bot = bots[index % #bots + 1],
      cycle = 0,
      position = 1,
      generation = 0,
      menu_generation = 0,
      sent = 0,
      accepted = 0,
      calls = 0,
    }
    chat.steps = cycle_steps(chat)
    chat.slot = n
    chats[n] = chat
    rows[n] = ""
  end
  current = 0
  pending = nil
  statuses = {}
  -- wrk calls the first thread's request() once more, to check the script;
  -- that request is never sent, so the first real one is not a re-send.
  resent = thread_index == 0 and -1 or 0
  local pace = tonumber(os.getenv("BENCH_PACE_RPS") or "")
  if pace and pace > 0 then
    local connections = tonumber(os.getenv("BENCH_CONNECTIONS"))
    interval_ms = 1000 * connections / pace
    -- Staggered, so that the connections do not send in step.
    due_ms = now_ms() + interval_ms * thread_index / connections
  end
end

local function update_body(chat, step)
  local user = string.format(
    '{"id":%d,"is_bot":false,"first_name":"Guest","language_code":"en"}', chat.id
  )
  local update_id = chat.index * UPDATES_PER_CHAT + chat.sent
  if step.kind == "menu" or step.kind == "wizard" then
    local data
    if step.kind == "menu" then
      data = callback_data(chat.menu_generation, "main", 0, tokens[step.token])
    else
      data = callback_data(chat.generation, "order", step.step, step.token)
    end
    return string.format(
      '{"update_id":%d,"callback_query":{"id":"%d:%d","from":%s,'
        .. '"chat_instance":"%d","data":%s,"message":{"message_id":%d,'
        .. '"date":%d,"chat":{"id":%d,"type":"private"},"text":"menu"}}}',
      update_id, chat.id, chat.sent, user, chat.id, json_string(data),
      chat.sent, os.time(), chat.id
    )
  end
  local entities = ""
  if step.kind == "command" then
    entities = string.format(
      ',"entities":[{"type":"bot_command","offset":0,"length":%d}]', #step.text
    )
  end
  return string.format(
    '{"update_id":%d,"message":{"message_id":%d,"date":%d,"from":%s,'
      .. '"chat":{"id":%d,"type":"private","first_name":"Guest"},"text":%s%s}}',
    update_id, chat.sent + 1, os.time(), user, chat.id, json_string(step.text), entities
  )
end

-- [chat id, bot id, updates sent, accepted, Bot API calls, generation].
function row_write(chat)
  rows[chat.slot] = string.format(
    "[%d,%s,%d,%d,%d,%d", chat.id, chat.bot, chat.sent, chat.accepted,
    chat.calls, chat.generation
  )
end

function request()
  if pending ~= nil then
    -- Not a 200, or no answer at all: sent again, as Telegram re-delivers.
    resent = resent + 1
    return pending.request
  end
  current = current % #chats + 1
  local chat = chats[current]
  local step = chat.steps[chat.position]
  local body = update_body(chat, step)
  chat.sent = chat.sent + 1
  local path = "/telegram/" .. chat.bot .. "/webhook"
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Telegram-Bot-Api-Secret-Token"] = secret,
  }
  pending = { chat = chat, step = step, request = wrk.format("POST", path, headers, body) }
  row_write(chat)
  flight.chat = chat.id
  flight.calls = chat.calls + step.calls
  flight.generation = chat.generation + step.gen
  flight.path = path
  flight.body = body
  return pending.request
end

if (tonumber(os.getenv("BENCH_PACE_RPS") or "") or 0) > 0 then
  function delay()
    local wait = due_ms - now_ms()
    due_ms = math.max(due_ms, now_ms() - interval_ms) + interval_ms
    return math.max(0, math.floor(wait))
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if pending == nil then
    return
  end
  if status ~= 200 then
    -- Telegram re-delivers an update that got no 2xx: request() resends it.
    return
  end
  local chat, step = pending.chat, pending.step
  pending = nil
  flight.chat = 0
  chat.accepted = chat.accepted + 1
  chat.calls = chat.calls + step.calls
  chat.generation = chat.generation + step.gen
  if step.menu then
    chat.menu_generation = chat.generation
  end
  chat.position = chat.position + 1
  if chat.position > #chat.steps then
    chat.cycle = chat.cycle + 1
    chat.position = 1
    chat.steps = cycle_steps(chat)
  end
  row_write(chat)
end

-- Each chat's row, then the calls and generation it should have if the
-- update in flight at the end was processed (else -1, -1), and that update's
-- request (null when none was in flight): the server may still be working
-- on it after wrk has stopped, so the runner sends it again, as Telegram
-- re-delivers an unanswered update, and reads the results only once it is
-- answered. Runs in the main state, on copies of a thread's globals.
local function report(thread)
  local flight = thread:get("flight")
  local rows = {}
  for _, row in ipairs(thread:get("rows")) do
    local id = tonumber(row:match("^%[(%d+),"))
    if id == flight.chat then
      rows[#rows + 1] = string.format("%s,%d,%d]", row, flight.calls, flight.generation)
    elseif row ~= "" then
      rows[#rows + 1] = row .. ",-1,-1]"
    end
  end
  local codes = {}
  for status, count in pairs(thread:get("statuses")) do
    codes[#codes + 1] = string.format('"%d":%d', status, count)
  end
  local unanswered = "null"
  if flight.chat ~= 0 then
    unanswered = string.format(
      '{"path":%s,"body":%s}', json_string(flight.path), json_string(flight.body)
    )
  end
  return string.format(
    '{"chats":[%s],"statuses":{%s},"resent":%d,"flight":%s}',
    table.concat(rows, ","), table.concat(codes, ","), thread:get("resent"),
    unanswered
  )
end

function done(summary, latency, requests)
  local reports = {}
  for _, thread in ipairs(threads) do
    reports[#reports + 1] = report(thread)
  end
  local errors = summary.errors
  local floor = math.floor
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p95":%d,"p99":%d,"mean":%.1f,"max":%d},'
      .. '"threads":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    floor(latency:percentile(50)), floor(latency:percentile(95)),
    floor(latency:percentile(99)), latency.mean, floor(latency.max),
    table.concat(reports, ",")
  ))
end
