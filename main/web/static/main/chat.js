// The customer-service chat page: protocol v2 (docs/protocol.md) over one
// WebSocket that reconnects by itself and resumes from the highest message
// seq up to which it has everything, so a message that was late or lost on
// the way is always fetched again; duplicates are dropped.
// A message the user sent stays known to the page until the server echoes it
// back: if it is refused, or the connection drops first, its text goes back
// into the box with a note.
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

  var orderId = root.dataset.orderId;
  var socket = null;
  var oldestId = null; // lowest message id shown: where "earlier" paging starts
  var shown = {}; // message id -> element, so nothing is shown twice
  var haveSeq = {}; // message seq -> its id, for every message held
  var contiguous = null; // every seq up to this one is held: the resume point (null: none yet)
  var maxSeq = 0;
  var gapTimer = null;
  var limits = null; // from the server's `ready`
  var pending = {}; // ref -> text of a message sent and not yet echoed back
  var unconfirmed = []; // texts put back in the box when the connection dropped
  var refCounter = 0;
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
    var date = new Date(iso);
    var time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (date.toDateString() === new Date().toDateString()) return time;
    return date.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + time;
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
    meta.appendChild(el("span", "msg-who", m.mine ? "You" : m.username));
    var when = el("time", "msg-time", formatTime(m.created));
    when.dateTime = m.created;
    when.title = new Date(m.created).toLocaleString();
    meta.appendChild(when);
    item.appendChild(meta);
    item.appendChild(el("div", "msg-text", m.message));
    if (m.mine) item.appendChild(el("div", "msg-seen", "Seen"));
    shown[m.id] = item;

    var next = null;
    var nodes = log.querySelectorAll(".msg");
    for (var i = 0; i < nodes.length; i++) {
      if (Number(nodes[i].dataset.seq) > m.seq) {
        next = nodes[i];
        break;
      }
    }
    log.insertBefore(item, next);
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
    typingEl.textContent = names.length ? names.join(", ") + (names.length > 1 ? " are" : " is") + " typing…" : "";
  }

  // Put a message's text back into the box, with a note saying why.
  function restore(text, note) {
    var current = input.value;
    if (current !== text) input.value = current.trim() ? text + "\n" + current : text;
    input.classList.add("restored");
    showError(note);
  }

  // The server has this text from us: it needs no putting back.
  function confirmed(e) {
    if (e.ref && pending[e.ref] !== undefined) delete pending[e.ref];
    var i = unconfirmed.indexOf(e.message);
    if (!e.ref && i >= 0) {
      // It was stored after all, before the connection dropped.
      unconfirmed.splice(i, 1);
      if (input.value === e.message) {
        input.value = "";
        input.classList.remove("restored");
        showError("");
      }
    }
  }

  function tooLong(text) {
    var max = limits && limits.max_message_chars;
    var length = Array.from(text).length; // characters as the server counts them
    return max && length > max ? "Your message is " + length + " characters long; the limit is " + max + "." : "";
  }

  var handlers = {
    ready: function (e) {
      retries = 0;
      limits = e.limits;
      setStatus("online", "Connected");
      if (!input.classList.contains("restored")) showError("");
      e.reads.forEach(function (r) {
        if (!r.mine) othersReadUpTo = Math.max(othersReadUpTo, r.id);
      });
    },
    history: function (e) {
      var stick = e.before === null;
      e.messages.forEach(addMessage);
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
    },
    chat_message: function (e) {
      var stick = e.mine || nearBottom();
      if (e.mine) confirmed(e);
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
    },
    chat_join: function (e) {
      if (!e.mine) addNotice(e.username + " joined the chat");
    },
    chat_leave: function (e) {
      if (!e.mine) addNotice(e.username + " left the chat");
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
      if (e.ref && pending[e.ref] !== undefined) {
        var text = pending[e.ref];
        delete pending[e.ref];
        restore(text, e.message + " Your message was not sent; it is back in the box.");
      } else {
        showError(e.message);
      }
    },
  };

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url =
      scheme + location.host + "/ws/customer-service/" + orderId + "/" + (contiguous !== null ? "?after_seq=" + contiguous : "");
    setStatus("connecting", retries ? "Reconnecting…" : "Connecting…");
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
    socket.onclose = function () {
      clearTimeout(openTimer);
      clearInterval(heartbeat);
      clearTimeout(gapTimer);
      gapTimer = null;
      // Sent but not echoed back: maybe stored, maybe not. Back in the box;
      // taken out again if the resume shows it was stored.
      var texts = Object.keys(pending).map(function (ref) {
        return pending[ref];
      });
      pending = {};
      if (texts.length) {
        unconfirmed = unconfirmed.concat(texts);
        restore(
          texts.join("\n"),
          "The connection dropped before your message was confirmed; it is back in the box. Send it again once connected."
        );
      }
      // Back off up to 15 s; resume from `contiguous` when back.
      var delay = Math.min(15000, 1000 * Math.pow(2, retries));
      retries += 1;
      setStatus("offline", "Offline, reconnecting…");
      setTimeout(connect, delay);
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text.trim()) return;
    var long = tooLong(text);
    if (long) {
      showError(long + " Shorten it and send again.");
      input.focus();
      return;
    }
    refCounter += 1;
    var ref = "m" + Date.now().toString(36) + "-" + refCounter;
    if (sendJson({ type: "message", message: text, ref: ref })) {
      pending[ref] = text;
      unconfirmed = [];
      input.value = "";
      input.classList.remove("restored");
      showError("");
    } else {
      showError("Not connected: your message is still in the box; send it again when connected.");
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

  connect();
  input.focus();
})();
