// The customer-service chat page: protocol v2 (docs/protocol.md) over one
// WebSocket that reconnects by itself and resumes from the last message seen.
// Everything from the server is shown with textContent, never as HTML.
(function () {
  "use strict";

  var PROTOCOL = "booktime.chat.v2";
  var HEARTBEAT_MS = 5000; // presence lasts 10 s per heartbeat
  var TYPING_MS = 2000;
  var CONNECT_TIMEOUT_MS = 10000;

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
  var lastId = 0; // highest message id shown: resume point after a reconnect
  var oldestId = null; // lowest message id shown: where "earlier" paging starts
  var shown = {}; // message id -> element, so nothing is shown twice
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

  // A message bubble, placed in id order whenever it arrives.
  function addMessage(m) {
    if (shown[m.id]) return;
    var item = el("div", "msg" + (m.mine ? " mine" : "") + (m.employee ? " employee" : ""));
    item.dataset.id = m.id;
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
      if (Number(nodes[i].dataset.id) > m.id) {
        next = nodes[i];
        break;
      }
    }
    log.insertBefore(item, next);
    lastId = Math.max(lastId, m.id);
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

  // Tell the others how far we have read, when we are actually looking.
  function sendRead() {
    if (document.visibilityState === "visible" && lastId > lastReadSent && sendJson({ type: "read", id: lastId })) {
      lastReadSent = lastId;
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

  var handlers = {
    ready: function (e) {
      retries = 0;
      setStatus("online", "Connected");
      showError("");
      e.reads.forEach(function (r) {
        if (!r.mine) othersReadUpTo = Math.max(othersReadUpTo, r.id);
      });
    },
    history: function (e) {
      var stick = e.before === null;
      e.messages.forEach(addMessage);
      if (e.before === null || e.messages.length) earlier.hidden = !e.has_more;
      if (!oldestId) empty.hidden = false;
      if (stick) scrollDown();
      sendRead();
    },
    chat_message: function (e) {
      var stick = e.mine || nearBottom();
      addMessage(e);
      delete typingTimers[e.username];
      renderTyping();
      if (stick) scrollDown();
      sendRead();
    },
    resumed: function (e) {
      if (e.has_more) sendJson({ type: "resume", after: e.last_id });
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
      showError(e.message);
    },
  };

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + "/ws/customer-service/" + orderId + "/" + (lastId ? "?after=" + lastId : "");
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
      // Back off up to 15 s; resume from lastId when back.
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
    if (sendJson({ type: "message", message: text })) {
      input.value = "";
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
