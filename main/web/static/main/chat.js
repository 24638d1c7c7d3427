// The customer-service chat page: protocol v2 (docs/protocol.md) over one
// WebSocket that reconnects by itself and resumes from the highest message
// seq up to which it has everything, so a message that was late or lost on
// the way is always fetched again; duplicates are dropped.
// Each message is sent with a client_id and shown as "sending" until the
// server echoes it back. If the connection drops first, it is sent again
// with the same client_id once the page has resumed: the server stores it
// once, whatever became of the first send ("Sending exactly once"). If the
// server refuses it (an `error` with its ref), its text goes back into the
// box with a note.
// A bar shows the conversation's status and who holds it (employees act on
// it there); a waiting customer sees their place in the queue.
// Everything from the server is shown with textContent, never as HTML.
(function () {
  "use strict";

  var PROTOCOL = "booktime.chat.v2";
  var HEARTBEAT_MS = 5000; // presence lasts 10 s per heartbeat
  var TYPING_MS = 2000;
  var CONNECT_TIMEOUT_MS = 10000;
  var GAP_MS = 1500; // a message missing this long after a later one arrived is fetched again

  var root = document.getElementById("chat");
  var log = document.getElementById("chat-log");
  var earlier = document.getElementById("chat-earlier");
  var empty = document.getElementById("chat-empty");
  var statusEl = document.getElementById("chat-status");
  var typingEl = document.getElementById("chat-typing");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var sendButton = document.getElementById("chat-send");
  var errorEl = document.getElementById("chat-error");
  var convStatus = document.getElementById("conv-status");
  var convHolder = document.getElementById("conv-holder");
  var convActions = document.getElementById("conv-actions"); // employees only
  var convError = document.getElementById("conv-error"); // employees only
  var queueEl = document.getElementById("chat-queue"); // customers only
  var announcer = document.getElementById("chat-announce"); // says each new message to screen readers

  var orderId = root.dataset.orderId;
  var me = Number(root.dataset.userId);
  var socket = null;
  var oldestId = null; // lowest message id shown: where "earlier" paging starts
  var shown = {}; // message id -> element, so nothing is shown twice
  var haveSeq = {}; // message seq -> its id, for every message held
  var contiguous = null; // every seq up to this one is held: the resume point (null: none yet)
  var maxSeq = 0;
  var gapTimer = null;
  var limits = null; // from the server's `ready`
  // client id -> {text, bubble, socket it was last sent on}: sent, not yet
  // echoed back. Its client id is its ref too.
  var pending = {};
  var conversation = null; // {status, waiting_since, assigned_to}, or null before any
  var clockOffset = 0; // the server's clock minus ours, in ms (from `ready`)
  var othersReadUpTo = 0;
  var lastReadSent = 0;
  var retries = 0;
  var heartbeat = null;
  var lastTypingSent = 0;
  var typingTimers = {};

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
    sendButton.disabled = state !== "online";
  }

  function showError(text) {
    errorEl.dataset.kind = "";
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  function formatTime(iso) {
    return BookTimeLocale.when(iso);
  }

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  // Every seq up to `contiguous` is held; move it forward over what arrived.
  function advance() {
    if (contiguous === null) return;
    while (haveSeq[contiguous + 1]) contiguous += 1;
  }

  // A gap (a later message came first) is fetched again if it stays open.
  function watchGap() {
    if (contiguous === null || maxSeq <= contiguous || gapTimer) return;
    gapTimer = setTimeout(function () {
      gapTimer = null;
      if (contiguous !== null && maxSeq > contiguous) sendJson({ type: "resume", after_seq: contiguous });
    }, GAP_MS);
  }

  // A message bubble, placed in seq order whenever it arrives.
  function addMessage(m) {
    if (shown[m.id] || haveSeq[m.seq]) return;
    haveSeq[m.seq] = m.id;
    maxSeq = Math.max(maxSeq, m.seq);
    var item = el("div", "msg" + (m.mine ? " mine" : "") + (m.employee ? " employee" : ""));
    item.dataset.id = m.id;
    item.dataset.seq = m.seq;
    var meta = el("div", "msg-meta");
    meta.appendChild(el("span", "msg-who", m.mine ? gettext("You") : m.username));
    var when = el("time", "msg-time", formatTime(m.created));
    when.dateTime = m.created;
    when.title = BookTimeLocale.full(m.created);
    meta.appendChild(when);
    item.appendChild(meta);
    item.appendChild(el("div", "msg-text", m.message));
    if (m.mine) item.appendChild(el("div", "msg-seen", gettext("Seen")));
    shown[m.id] = item;

    // Before any later message, and before the ones still being sent.
    var next = null;
    var nodes = log.querySelectorAll(".msg[data-seq]");
    for (var i = 0; i < nodes.length; i++) {
      if (Number(nodes[i].dataset.seq) > m.seq) {
        next = nodes[i];
        break;
      }
    }
    log.insertBefore(item, next || log.querySelector(".outgoing"));
    oldestId = oldestId === null ? m.id : Math.min(oldestId, m.id);
    empty.hidden = true;
    markSeen();
  }

  function addNotice(text) {
    log.appendChild(el("div", "notice", text));
  }

  function markSeen() {
    Object.keys(shown).forEach(function (id) {
      shown[id].classList.toggle("seen", Number(id) <= othersReadUpTo);
    });
  }

  function sendJson(data) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(data));
      return true;
    }
    return false;
  }

  // Tell the others how far we have read, when we are actually looking:
  // up to the last message with none missing before it.
  function sendRead() {
    var upTo = contiguous ? haveSeq[contiguous] : 0;
    if (document.visibilityState === "visible" && upTo > lastReadSent && sendJson({ type: "read", id: upTo })) {
      lastReadSent = upTo;
    }
  }

  function showTyping(name) {
    clearTimeout(typingTimers[name]);
    typingTimers[name] = setTimeout(function () {
      delete typingTimers[name];
      renderTyping();
    }, 3500);
    renderTyping();
  }

  function renderTyping() {
    var names = Object.keys(typingTimers);
    var typing = ngettext("%(names)s is typing…", "%(names)s are typing…", names.length);
    typingEl.textContent = names.length ? interpolate(typing, { names: BookTimeLocale.list(names) }, true) : "";
  }

  // Put a message's text back into the box, with a note saying why.
  function restore(text, note) {
    var current = input.value;
    if (current !== text) input.value = current.trim() ? text + "\n" + current : text;
    input.classList.add("restored");
    showError(note);
  }

  // A client id per message: random, from the characters the server takes.
  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Date.now().toString(36) + "-" + Array.from(bytes, function (b) {
      return b.toString(16).padStart(2, "0");
    }).join("");
  }

  // A message on its way: in the log, marked as not confirmed yet. Not a
  // ".msg" until the server has stored it.
  function pendingBubble(text) {
    var item = el("div", "outgoing");
    var meta = el("div", "msg-meta");
    meta.appendChild(el("span", "msg-who", gettext("You")));
    meta.appendChild(el("span", "msg-sending"));
    item.appendChild(meta);
    item.appendChild(el("div", "msg-text", text));
    log.appendChild(item);
    empty.hidden = true;
    return item;
  }

  function sendPending(clientId) {
    var p = pending[clientId];
    p.socket = socket;
    p.bubble.querySelector(".msg-sending").textContent = gettext("Sending…");
    sendJson({ type: "message", message: p.text, ref: clientId, client_id: clientId });
  }

  // Sent on a socket that has since closed: maybe stored, maybe not. Sent
  // again under the same client id, the server stores it once.
  function resendPending() {
    Object.keys(pending).forEach(function (clientId) {
      if (pending[clientId].socket !== socket) sendPending(clientId);
    });
  }

  function dropPending(clientId) {
    var p = pending[clientId];
    delete pending[clientId];
    p.bubble.remove();
    if (!log.querySelector(".msg, .outgoing")) empty.hidden = false;
    return p;
  }

  // One of our messages came back (live, replayed or in history): it is
  // stored, and shown as such.
  function settle(m) {
    var clientId = m.mine && (m.client_id || m.ref);
    if (clientId && pending[clientId]) dropPending(clientId);
  }

  function tooLong(text) {
    var max = limits && limits.max_message_chars;
    var length = Array.from(text).length; // characters as the server counts them
    var said = gettext("Your message is %(length)s characters long; the limit is %(max)s.");
    return max && length > max ? interpolate(said, { length: length, max: max }, true) : "";
  }

  // The bar under the title: the status (the wait counting up), who holds it.
  function showStatus() {
    var c = conversation;
    var status = c ? c.status : "none";
    var text = { none: gettext("No messages yet"), answered: gettext("Answered"), resolved: gettext("Resolved") }[status];
    if (status === "waiting") {
      text = gettext("Waiting for a reply");
      if (c.waiting_since) text += " · " + BookTimeLive.duration(Date.now() + clockOffset - Date.parse(c.waiting_since));
    }
    convStatus.dataset.status = status;
    convStatus.textContent = text;
  }

  function showConversation(c) {
    conversation = c;
    showStatus();
    var holder = c && c.assigned_to;
    var mine = !!holder && holder.id === me;
    if (convActions) {
      convHolder.textContent = holder
        ? mine
          ? gettext("Held by you")
          : interpolate(gettext("Held by %(name)s"), { name: holder.name }, true)
        : gettext("Nobody holds it");
      var resolved = !!c && c.status === "resolved";
      var focused = document.activeElement;
      var visible = { claim: !resolved && !holder, release: mine, resolve: !!c && !resolved, reopen: resolved };
      convActions.querySelectorAll("button[data-action]").forEach(function (b) {
        b.hidden = !visible[b.dataset.action];
      });
      // The button just used may be gone (Claim becomes Release): keep the
      // keyboard user in the bar.
      if (convActions.contains(focused) && focused.hidden) {
        (convActions.querySelector("button:not([hidden])") || input).focus();
      }
    } else {
      var looking = gettext("%(name)s is looking after your question");
      convHolder.textContent = holder ? interpolate(looking, { name: holder.name }, true) : "";
    }
    if (queueEl && (!c || c.status !== "waiting")) queueEl.textContent = "";
  }

  var handlers = {
    ready: function (e) {
      retries = 0;
      if (e.now) clockOffset = Date.parse(e.now) - Date.now();
      limits = e.limits;
      setStatus("online", gettext("Connected"));
      if (!input.classList.contains("restored")) showError("");
      e.reads.forEach(function (r) {
        if (!r.mine) othersReadUpTo = Math.max(othersReadUpTo, r.id);
      });
      showConversation(e.conversation);
    },
    history: function (e) {
      var stick = e.before === null;
      e.messages.forEach(function (m) {
        settle(m);
        addMessage(m);
      });
      if (e.before === null && contiguous === null) {
        // The latest page is every message up to its last one.
        contiguous = e.messages.length ? e.messages[e.messages.length - 1].seq : 0;
        advance();
        watchGap();
      }
      if (e.before === null || e.messages.length) earlier.hidden = !e.has_more;
      if (!oldestId) empty.hidden = false;
      if (stick) scrollDown();
      sendRead();
      // A first connection (not a resume): anything sent before goes again.
      if (e.before === null) resendPending();
    },
    chat_message: function (e) {
      var stick = e.mine || nearBottom();
      if (!e.mine && !shown[e.id]) announcer.textContent = e.username + ": " + e.message;
      settle(e);
      addMessage(e);
      advance();
      watchGap();
      delete typingTimers[e.username];
      renderTyping();
      if (stick) scrollDown();
      sendRead();
    },
    resumed: function (e) {
      advance();
      if (e.has_more) sendJson({ type: "resume", after_seq: contiguous });
      else watchGap();
      scrollDown();
      sendRead();
      // Every stored message is in now: those of ours still not among them go again.
      if (!e.has_more) resendPending();
    },
    chat_join: function (e) {
      if (!e.mine) addNotice(interpolate(gettext("%(name)s joined the chat"), { name: e.username }, true));
    },
    chat_leave: function (e) {
      if (!e.mine) addNotice(interpolate(gettext("%(name)s left the chat"), { name: e.username }, true));
    },
    typing: function (e) {
      showTyping(e.username);
    },
    read: function (e) {
      if (!e.mine) {
        othersReadUpTo = Math.max(othersReadUpTo, e.id);
        markSeen();
      }
    },
    error: function (e) {
      if (e.ref && pending[e.ref]) {
        var note = gettext("%(reason)s Your message was not sent; it is back in the box.");
        restore(dropPending(e.ref).text, interpolate(note, { reason: refusal(e) }, true));
      } else {
        showError(refusal(e));
      }
    },
    // Sent to this client alone: its message was stored, but changed (a card number masked).
    notice: function (e) {
      showError(NOTICES[e.code] || e.message);
      errorEl.dataset.kind = "notice";
    },
    conversation: function (e) {
      showConversation({ status: e.status, waiting_since: e.waiting_since, assigned_to: e.assigned_to });
    },
    queue: function (e) {
      if (queueEl && conversation && conversation.status === "waiting") queueEl.textContent = queuePlace(e);
    },
  };

  // What the server's `error` and `notice` events say, by their codes, in
  // the page's language (the socket's own `message` is English); a code
  // the page never causes is shown as the server said it.
  function refusal(e) {
    var max = limits && limits.max_message_chars;
    switch (e.code) {
      case "rate_limited":
        return gettext("Too many messages; slow down.");
      case "empty_message":
        return gettext("Empty or blank messages are not sent.");
      case "too_long":
        return max ? interpolate(gettext("A message may not exceed %(max)s characters."), { max: max }, true) : e.message;
      case "bad_message":
        return gettext("This message contains characters that cannot be sent.");
      case "unavailable":
        return gettext("Briefly unavailable; try again shortly.");
      case "server_error":
        return gettext("Something went wrong; try again.");
      default:
        return e.message;
    }
  }

  var NOTICES = {
    card_number_masked: gettext(
      "A payment card number was masked: only its last four digits were kept. Never send card numbers in the chat."
    ),
  };

  // Where a waiting customer stands (the `queue` event's numbers), as the server says it in English.
  function queuePlace(e) {
    if (!e.agents_online) {
      return gettext(
        "Nobody from customer service is online right now. Your message is kept, and we will answer as soon as someone is back."
      );
    }
    var ahead =
      e.position === 1
        ? gettext("You are next.")
        : interpolate(gettext("You are number %(position)s in the queue."), { position: e.position }, true);
    if (e.expected_wait_seconds === null || e.expected_wait_seconds === undefined) {
      return interpolate(gettext("%(ahead)s We will answer as soon as we can."), { ahead: ahead }, true);
    }
    var minutes = Math.max(1, Math.round(e.expected_wait_seconds / 60));
    var wait = ngettext(
      "%(ahead)s Expected wait: about %(minutes)s minute.",
      "%(ahead)s Expected wait: about %(minutes)s minutes.",
      minutes
    );
    return interpolate(wait, { ahead: ahead, minutes: minutes }, true);
  }

  var FINAL_CLOSES = {
    4401: gettext("You have been signed out. Sign in again to go on chatting."),
    4403: gettext("You no longer have access to this chat."),
    4429: gettext("Too many chats are open for your account. Close one, then reload this page."),
  };

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url =
      scheme + location.host + "/ws/customer-service/" + orderId + "/" + (contiguous !== null ? "?after_seq=" + contiguous : "");
    setStatus("connecting", retries ? gettext("Reconnecting…") : gettext("Connecting…"));
    var current = new WebSocket(url, [PROTOCOL]);
    socket = current;
    // A handshake that hangs is given up on (onclose then retries).
    var openTimer = setTimeout(function () {
      if (current.readyState === WebSocket.CONNECTING) current.close();
    }, CONNECT_TIMEOUT_MS);
    socket.onmessage = function (message) {
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      var handler = handlers[event.type];
      if (handler) handler(event);
    };
    socket.onopen = function () {
      clearTimeout(openTimer);
      sendJson({ type: "heartbeat" });
      clearInterval(heartbeat);
      heartbeat = setInterval(function () {
        sendJson({ type: "heartbeat" });
      }, HEARTBEAT_MS);
    };
    socket.onclose = function (closed) {
      clearTimeout(openTimer);
      clearInterval(heartbeat);
      clearTimeout(gapTimer);
      gapTimer = null;
      // Closes that reconnecting would not mend (docs/protocol.md, close codes).
      var final = FINAL_CLOSES[closed.code];
      if (final) {
        setStatus("offline", gettext("Disconnected"));
        showError(final);
        return;
      }
      // Sent but not echoed back: kept, and sent again once resumed.
      Object.keys(pending).forEach(function (clientId) {
        pending[clientId].bubble.querySelector(".msg-sending").textContent = gettext("Not sent yet: waiting for the connection…");
      });
      // Back off up to 15 s, each wait drawn between half and all of it so
      // that the sockets a restarting worker closes do not all come back in
      // the same instant; resume from `contiguous` when back.
      var delay = Math.min(15000, 1000 * Math.pow(2, retries)) * (0.5 + Math.random() / 2);
      retries += 1;
      setStatus("offline", gettext("Offline, reconnecting…"));
      setTimeout(connect, delay);
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text.trim()) return;
    var long = tooLong(text);
    if (long) {
      showError(interpolate(gettext("%(problem)s Shorten it and send again."), { problem: long }, true));
      input.focus();
      return;
    }
    if (socket && socket.readyState === WebSocket.OPEN) {
      var clientId = newClientId();
      pending[clientId] = { text: text, bubble: pendingBubble(text), socket: null };
      sendPending(clientId);
      scrollDown();
      input.value = "";
      input.classList.remove("restored");
      showError("");
    } else {
      showError(gettext("Not connected: your message is still in the box; send it again when connected."));
    }
    input.focus();
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  input.addEventListener("input", function () {
    var long = tooLong(input.value);
    if (long) showError(long);
    else if (errorEl.dataset.kind === "length") showError("");
    errorEl.dataset.kind = long ? "length" : "";
    var now = Date.now();
    if (input.value.trim() && now - lastTypingSent > TYPING_MS) {
      lastTypingSent = now;
      sendJson({ type: "typing" });
    }
  });

  earlier.addEventListener("click", function () {
    var firstMessage = log.querySelector(".msg");
    var height = log.scrollHeight;
    sendJson({ type: "history", before: oldestId });
    // Keep the view where it was once the older page is in.
    var observer = new MutationObserver(function () {
      log.scrollTop += log.scrollHeight - height;
      observer.disconnect();
    });
    observer.observe(log, { childList: true });
    if (!firstMessage) earlier.hidden = true;
  });

  document.addEventListener("visibilitychange", sendRead);

  // Employees' actions go through the REST API; the socket brings the new
  // state to everyone (this page too).
  if (convActions) {
    convActions.addEventListener("click", function (event) {
      var b = event.target.closest("button[data-action]");
      if (!b) return;
      convError.textContent = "";
      window.BookTimeConversations.run(b, orderId, b.dataset.action, function (message) {
        convError.textContent = message;
      }).then(function (c) {
        // Offline, the socket cannot tell: the answer does.
        if (c && !(socket && socket.readyState === WebSocket.OPEN)) showConversation(c);
      });
    });
  }
  setInterval(function () {
    if (conversation && conversation.status === "waiting") showStatus();
  }, 1000);

  // Phones: no room for the keyboard hint (nor a Shift key to use it).
  var narrow = window.matchMedia("(max-width: 40rem)");
  var hint = input.placeholder;
  function fitPlaceholder() {
    input.placeholder = narrow.matches ? gettext("Write a message…") : hint;
  }
  narrow.addEventListener("change", fitPlaceholder);
  fitPlaceholder();
  connect();
  input.focus();
})();
