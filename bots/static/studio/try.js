/*
 * "Try it": chat with a spec version, or the draft, without Telegram.
 *
 * Elements (stable: browser tests find them by these):
 *   #try-version  the spec to run: "draft", "live" or a version number
 *   #try-locale   the language the test user's app reports
 *   #try-log      the conversation; each bot message is a .try-bot bubble
 *                 with data-message-id, its buttons .try-button under it
 *   #try-input    the text or /command to send; #try-send sends it
 *   .try-button   a button the bot showed; pressing it presses it
 *   #try-reset    forget the conversation and start over
 *   #try-save     save the conversation as a draft test named by
 *                 #try-save-name; #try-saved says what was saved
 *   #try-errors   what went wrong (an invalid draft lists its errors)
 *
 * An edited message is updated where it stands, not appended. Every text
 * is set as text, never as HTML.
 */
(function () {
  "use strict";

  const root = document.getElementById("try");
  if (!root) {
    return;
  }
  const log = document.getElementById("try-log");
  const version = document.getElementById("try-version");
  const locale = document.getElementById("try-locale");
  const input = document.getElementById("try-input");
  const send = document.getElementById("try-send");
  const errors = document.getElementById("try-errors");
  const saveName = document.getElementById("try-save-name");
  const saved = document.getElementById("try-saved");
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  let busy = false;

  function showErrors(body) {
    errors.replaceChildren();
    const lines = [];
    if (body && body.fields) {
      for (const [path, messages] of Object.entries(body.fields)) {
        for (const message of messages) {
          lines.push(path + ": " + message);
        }
      }
    }
    if (!lines.length && body) {
      lines.push(body.detail || "Something went wrong.");
    }
    for (const line of lines) {
      const item = document.createElement("li");
      item.textContent = line;
      errors.appendChild(item);
    }
    errors.hidden = lines.length === 0;
  }

  async function call(url, options) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (error) {
      showErrors({ detail: "The server cannot be reached." });
      return null;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = { detail: "The server answered " + response.status + "." };
    }
    if (!response.ok) {
      showErrors(body);
      return null;
    }
    showErrors(null);
    return body;
  }

  function post(name, data) {
    return call(root.dataset[name + "Url"], {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(Object.assign({ version: version.value }, data)),
      credentials: "same-origin",
    });
  }

  function keyboard(reply) {
    const box = document.createElement("div");
    box.className = "try-keyboard";
    let row = null;
    let rowNumber = null;
    reply.buttons.forEach(function (button, index) {
      if (row === null || button.row !== rowNumber) {
        row = document.createElement("div");
        row.className = "try-row";
        box.appendChild(row);
        rowNumber = button.row;
      }
      let element;
      if (button.kind === "url") {
        element = document.createElement("a");
        element.href = button.url;
        element.target = "_blank";
        element.rel = "noopener noreferrer";
      } else {
        element = document.createElement("button");
        element.type = "button";
        element.dataset.index = String(index);
      }
      element.className = "try-button try-button-" + button.kind;
      element.textContent = button.label;
      row.appendChild(element);
    });
    return box;
  }

  function fill(bubble, reply) {
    bubble.replaceChildren();
    const text = document.createElement("div");
    text.className = "try-text";
    text.textContent = reply.text;
    bubble.appendChild(text);
    if (reply.buttons.length) {
      bubble.appendChild(keyboard(reply));
    }
  }

  function bubble(className, text) {
    const element = document.createElement("div");
    element.className = "try-bubble " + className;
    element.textContent = text;
    log.appendChild(element);
    return element;
  }

  function render(entry) {
    if ("say" in entry) {
      bubble("try-user", entry.say);
    } else if ("press" in entry) {
      bubble("try-user try-pressed", "[" + entry.press + "]");
    } else if ("contact" in entry) {
      bubble("try-user try-contact", "📞 " + entry.contact);
    }
    for (const reply of entry.replies) {
      if (reply.kind === "notice") {
        bubble("try-notice", reply.text);
        continue;
      }
      let element = null;
      if (reply.kind === "edit") {
        element = log.querySelector(
          '.try-bot[data-message-id="' + String(reply.message_id) + '"]'
        );
      }
      if (element === null) {
        element = bubble("try-bot", "");
        element.dataset.messageId = String(reply.message_id);
      } else {
        element.classList.add("try-edited");
      }
      fill(element, reply);
    }
    log.scrollTop = log.scrollHeight;
  }

  function setLocales(locales, preferred) {
    const previous = locale.value;
    locale.replaceChildren();
    for (const code of locales) {
      const option = document.createElement("option");
      option.value = code;
      option.textContent = code;
      locale.appendChild(option);
    }
    locale.value = locales.includes(previous) ? previous : preferred;
  }

  function enable(enabled) {
    for (const element of [input, send, locale]) {
      element.disabled = !enabled;
    }
  }

  async function load() {
    log.replaceChildren();
    const url =
      root.dataset.logUrl + "?version=" + encodeURIComponent(version.value);
    const body = await call(url, { credentials: "same-origin" });
    if (body === null) {
      setLocales([], "");
      enable(false);
      return;
    }
    setLocales(body.locales, body.default_locale);
    enable(true);
    body.entries.forEach(render);
  }

  async function run(name, data) {
    if (busy) {
      return;
    }
    busy = true;
    try {
      const body = await post(name, Object.assign({ locale: locale.value }, data));
      if (body !== null) {
        render(body.entry);
      }
    } finally {
      busy = false;
    }
  }

  document.getElementById("try-compose").addEventListener("submit", function (event) {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) {
      return;
    }
    input.value = "";
    run("send", { text: text });
  });

  log.addEventListener("click", function (event) {
    const button = event.target.closest("button.try-button");
    if (!button) {
      return;
    }
    const message = button.closest(".try-bot");
    run("press", {
      message_id: Number(message.dataset.messageId),
      index: Number(button.dataset.index),
    });
  });

  document.getElementById("try-reset").addEventListener("click", async function () {
    const body = await post("reset", {});
    if (body !== null) {
      log.replaceChildren();
      saved.textContent = "";
    }
  });

  document.getElementById("try-save-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    saved.textContent = "";
    const body = await post("save", { locale: locale.value, name: saveName.value });
    if (body !== null) {
      saved.textContent =
        "Saved \u201c" + body.transcript.name + "\u201d (" +
        body.transcript.steps + " steps) as a draft test.";
    }
  });

  version.addEventListener("change", load);
  load();
})();
