// The agents' inbox: every conversation that waits, is answered or was
// resolved lately, live from /customer-service/inbox/ (docs/presence.md,
// "The inbox stream"): the whole inbox first, then one conversation each
// time it changes. Whether a customer is in their chat comes from the
// presence stream that dashboard.js reads ("booktime:presence" events).
// DOM APIs only (textContent, createElement): data never becomes markup.
(function () {
  "use strict";

  var root = document.getElementById("inbox");
  var list = document.getElementById("inbox-list");
  var panel = document.getElementById("inbox-panel");
  var emptyEl = document.getElementById("inbox-empty");
  var connection = document.getElementById("inbox-connection");
  var errorEl = document.getElementById("inbox-error");
  var announcer = document.getElementById("inbox-announce");
  var notifyButton = document.getElementById("inbox-notify");
  var muteButton = document.getElementById("inbox-mute");
  var tabs = Array.prototype.slice.call(document.querySelectorAll("#inbox-tabs [role=tab]"));
  var actions = window.BookTimeConversations;

  var me = Number(root.dataset.userId);
  var streamUrl = root.dataset.stream;
  var baseTitle = document.title;
  var MUTED_KEY = "booktime.inbox.muted";
  var TAB_KEY = "booktime.inbox.tab";
  var PREVIEW_CHARS = 140;

  var FILTERS = {
    waiting: function (c) {
      return c.status === "waiting";
    },
    mine: function (c) {
      return c.status !== "resolved" && isMine(c);
    },
    unassigned: function (c) {
      return c.status !== "resolved" && !c.assigned_to;
    },
    resolved: function (c) {
      return c.status === "resolved";
    },
    all: function () {
      return true;
    },
  };
  var EMPTY = {
    waiting: gettext("Nobody is waiting. New customers show up here as soon as they write."),
    mine: gettext("You hold no open conversations. Claim one to look after it."),
    unassigned: gettext("Every open conversation is held by someone."),
    resolved: gettext("Nothing was resolved lately."),
    all: gettext("No conversations yet."),
  };
  // Waiting ones first, the longest wait first; then the latest change
  // first, answered before resolved: the order the server sends.
  var RANK = { waiting: 0, answered: 1, resolved: 2 };

  var items = {}; // order id -> the conversation, as last told
  var rows = {}; // order id -> its row's parts
  var online = {}; // order id -> true while its customer is in the chat
  var loaded = false; // the first whole inbox has come (it notifies nobody)
  var clockOffset = 0; // ms: the server's clock minus ours
  var filter = FILTERS[recall(TAB_KEY)] ? recall(TAB_KEY) : "waiting";
  var muted = recall(MUTED_KEY) === "1";
  var audio = null;

  // localStorage may be refused (private modes, policies): then the page
  // just forgets.
  function recall(key) {
    try {
      return localStorage.getItem(key);
    } catch (err) {
      return null;
    }
  }

  function remember(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch (err) {
      // not kept
    }
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function isMine(c) {
    return !!c.assigned_to && c.assigned_to.id === me;
  }

  function time(iso) {
    return iso ? Date.parse(iso) : 0;
  }

  function clockTime(iso) {
    return BookTimeLocale.when(iso);
  }

  // Cut by characters, not UTF-16 units, so no emoji is split.
  function preview(text, max) {
    var chars = Array.from(text.replace(/\s+/g, " ").trim());
    return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : chars.join("");
  }

  function compare(a, b) {
    var rank = RANK[a.status] - RANK[b.status];
    if (rank) return rank;
    if (a.status === "waiting") {
      var waited = time(a.waiting_since) - time(b.waiting_since);
      if (waited) return waited;
    }
    return time(b.updated) - time(a.updated) || a.order_id - b.order_id;
  }

  // --- Rows -------------------------------------------------------------------

  function button(action) {
    var b = el("button", "conv-button " + action, actions.LABELS[action]);
    b.type = "button";
    b.dataset.action = action;
    return b;
  }

  function buildRow(orderId) {
    var parts = { item: el("li", "conv") };
    parts.item.dataset.orderId = orderId;

    var main = el("div", "conv-main");
    var head = el("div", "conv-head");
    parts.dot = el("span", "online-dot");
    parts.onlineText = el("span", "visually-hidden");
    parts.link = el("a", "conv-name");
    parts.link.href = "/customer-service/" + orderId + "/";
    parts.email = el("span", "conv-email");
    head.append(parts.dot, parts.onlineText, parts.link, parts.email);
    main.appendChild(head);

    parts.last = el("p", "conv-last");
    main.appendChild(parts.last);

    var meta = el("p", "conv-meta");
    meta.appendChild(el("span", "conv-order", interpolate(gettext("Order #%(id)s"), { id: orderId }, true)));
    parts.when = el("time", "conv-time");
    meta.appendChild(parts.when);
    parts.holder = el("span", "conv-holder");
    parts.unread = el("span", "conv-unread");
    meta.append(parts.holder, parts.unread);
    main.appendChild(meta);
    parts.item.appendChild(main);

    var side = el("div", "conv-side");
    parts.state = el("span", "conv-state");
    side.appendChild(parts.state);
    var buttons = el("div", "conv-actions");
    parts.buttons = {};
    ["claim", "release", "resolve", "reopen"].forEach(function (action) {
      parts.buttons[action] = button(action);
      buttons.appendChild(parts.buttons[action]);
    });
    side.appendChild(buttons);
    parts.item.appendChild(side);
    return parts;
  }

  function showOnline(parts, orderId) {
    var here = !!online[orderId];
    parts.item.classList.toggle("online", here);
    parts.dot.title = here ? gettext("In the chat now") : gettext("Not in the chat");
    parts.onlineText.textContent = here ? gettext("(in the chat now)") : "";
  }

  // Updated in place, so a focused button keeps its focus.
  function updateRow(parts, c) {
    if (parts.c === c) return; // each change is a new object: an unchanged row is left as it is
    parts.c = c;
    var customer = c.customer || { name: gettext("Customer"), email: "" };
    parts.item.dataset.status = c.status;
    parts.item.classList.toggle("mine", isMine(c));
    parts.link.textContent = customer.name;
    parts.email.textContent = customer.email && customer.email !== customer.name ? customer.email : "";
    var last = c.last_message;
    // The customer's name is on the row already: only someone else's is said.
    var who = last && last.username !== customer.name ? interpolate(gettext("%(name)s: "), { name: last.username }, true) : "";
    parts.last.textContent = last ? who + preview(last.message, PREVIEW_CHARS) : gettext("No messages yet");
    parts.last.title = last ? last.message : "";
    parts.when.hidden = !last;
    if (last) {
      parts.when.dateTime = last.at;
      parts.when.textContent = clockTime(last.at);
      parts.when.title = interpolate(gettext("Last message: %(time)s"), { time: BookTimeLocale.full(last.at) }, true);
    }
    parts.holder.textContent = c.assigned_to
      ? isMine(c)
        ? gettext("Held by you")
        : interpolate(gettext("Held by %(name)s"), { name: c.assigned_to.name }, true)
      : gettext("Nobody holds it");
    parts.unread.textContent = c.unread ? interpolate(ngettext("%(count)s unread", "%(count)s unread", c.unread), { count: c.unread }, true) : "";
    parts.unread.hidden = !c.unread;

    parts.state.className = "conv-state " + c.status;
    if (c.status === "waiting" && c.waiting_since) {
      parts.state.dataset.waitingSince = c.waiting_since;
      parts.state.title = interpolate(gettext("Waiting since %(time)s"), { time: BookTimeLocale.time(c.waiting_since) }, true);
    } else {
      delete parts.state.dataset.waitingSince;
      parts.state.textContent = c.status === "resolved" ? gettext("Resolved") : gettext("Answered");
      parts.state.title = "";
    }

    var resolved = c.status === "resolved";
    var visible = {
      claim: !resolved && !c.assigned_to,
      release: isMine(c),
      resolve: !resolved,
      reopen: resolved,
    };
    Object.keys(parts.buttons).forEach(function (action) {
      var b = parts.buttons[action];
      b.hidden = !visible[action];
      var label = {
        claim: gettext("Claim the conversation with %(name)s, order #%(id)s"),
        release: gettext("Release the conversation with %(name)s, order #%(id)s"),
        resolve: gettext("Resolve the conversation with %(name)s, order #%(id)s"),
        reopen: gettext("Reopen the conversation with %(name)s, order #%(id)s"),
      }[action];
      b.setAttribute("aria-label", interpolate(label, { name: customer.name, id: c.order_id }, true));
    });
    showOnline(parts, c.order_id);
  }

  function render() {
    var focused = document.activeElement;
    Object.keys(rows).forEach(function (id) {
      if (!items[id]) {
        rows[id].item.remove();
        delete rows[id];
      }
    });
    var sorted = Object.keys(items)
      .map(function (id) {
        return items[id];
      })
      .sort(compare);
    var previous = null;
    sorted.forEach(function (c) {
      var parts = rows[c.order_id] || (rows[c.order_id] = buildRow(c.order_id));
      updateRow(parts, c);
      var place = previous ? previous.nextSibling : list.firstChild;
      if (parts.item !== place) list.insertBefore(parts.item, place); // only rows out of place move
      previous = parts.item;
    });
    applyFilter();
    showCounts(sorted);
    tick();
    keepFocus(focused);
  }

  // A row that moved, or a button that was hidden, must not drop the
  // keyboard user's place on the page.
  function keepFocus(focused) {
    if (!focused || focused === document.body) return;
    if (focused.isConnected && !list.contains(focused)) return; // elsewhere on the page
    if (focused.isConnected && focused.offsetParent !== null) {
      if (document.activeElement !== focused) focused.focus({ preventScroll: true });
      return;
    }
    var row = focused.isConnected ? focused.closest(".conv") : null;
    var next = null;
    if (row && !row.hidden) {
      next = row.querySelector(".conv-actions button:not([hidden])") || row.querySelector(".conv-name");
    } else if (row) {
      // The row left this tab: on to its neighbour, else the tab itself.
      var near = neighbour(row, "nextElementSibling") || neighbour(row, "previousElementSibling");
      next = near && near.querySelector(".conv-name");
    }
    (next || selectedTab()).focus({ preventScroll: true });
  }

  function neighbour(row, direction) {
    var node = row[direction];
    while (node && node.hidden) node = node[direction];
    return node;
  }

  function selectedTab() {
    return tabs.filter(function (tab) {
      return tab.dataset.filter === filter;
    })[0];
  }

  function applyFilter() {
    var test = FILTERS[filter];
    var shown = 0;
    Object.keys(rows).forEach(function (id) {
      var match = test(items[id]);
      rows[id].item.hidden = !match;
      if (match) shown += 1;
    });
    emptyEl.textContent = loaded ? EMPTY[filter] : gettext("Loading…");
    emptyEl.hidden = shown > 0;
  }

  function showCounts(sorted) {
    tabs.forEach(function (tab) {
      var count = sorted.filter(FILTERS[tab.dataset.filter]).length;
      tab.querySelector(".count").textContent = count;
      tab.dataset.count = count;
    });
    var waiting = sorted.filter(FILTERS.waiting).length;
    document.title = waiting ? "(" + waiting + ") " + baseTitle : baseTitle;
  }

  // Waiting times count up every second, on the server's clock.
  function tick() {
    var now = Date.now() + clockOffset;
    list.querySelectorAll("[data-waiting-since]").forEach(function (state) {
      var waited = BookTimeLive.duration(now - Date.parse(state.dataset.waitingSince));
      state.textContent = interpolate(gettext("Waiting %(time)s"), { time: waited }, true);
    });
  }

  // --- The stream -------------------------------------------------------------

  // The whole inbox: on load and on every reconnect. Only a reconnect's
  // list notifies, of customers who started waiting while it was away.
  function takeAll(data) {
    clockOffset = Date.parse(data.now) - Date.now();
    var before = items;
    items = {};
    data.conversations.forEach(function (c) {
      items[c.order_id] = c;
    });
    if (loaded) {
      data.conversations.forEach(function (c) {
        if (startedWaiting(before[c.order_id], c)) customerWaits(c);
      });
    }
    loaded = true;
    render();
  }

  function takeOne(c) {
    var before = items[c.order_id];
    items[c.order_id] = c;
    if (loaded && startedWaiting(before, c)) customerWaits(c);
    else if (loaded && wroteAgain(before, c)) {
      // A waiting customer's next message: said alone, as the live region's only text.
      announcer.textContent = c.last_message.username + " (#" + c.order_id + "): " + preview(c.last_message.message, 100);
    }
    render();
  }

  function wroteAgain(before, now) {
    var last = now.last_message;
    return now.status === "waiting" && !!last && !!before && (!before.last_message || before.last_message.seq < last.seq);
  }

  function startedWaiting(before, now) {
    return now.status === "waiting" && (!before || before.status !== "waiting");
  }

  document.addEventListener("booktime:presence", function (event) {
    online = {};
    event.detail.chats.forEach(function (chat) {
      var customerHere = chat.present.some(function (person) {
        return person.role === "customer";
      });
      if (customerHere) online[chat.order_id] = true;
    });
    Object.keys(rows).forEach(function (id) {
      showOnline(rows[id], id);
    });
  });

  // --- Telling the agent ------------------------------------------------------

  function customerWaits(c) {
    var name = c.customer ? c.customer.name : gettext("A customer");
    var text = c.last_message ? preview(c.last_message.message, 100) : "";
    var said = { name: name, id: c.order_id, text: text };
    announcer.textContent = interpolate(
      text ? gettext("%(name)s is waiting, order #%(id)s: %(text)s") : gettext("%(name)s is waiting, order #%(id)s."),
      said,
      true
    );
    beep();
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      var note = new Notification(interpolate(gettext("%(name)s is waiting"), said, true), {
        body: interpolate(text ? gettext("Order #%(id)s: %(text)s") : gettext("Order #%(id)s"), said, true),
        tag: "booktime-order-" + c.order_id, // one per conversation, replaced as it changes
      });
      note.onclick = function () {
        window.focus();
        var parts = rows[c.order_id];
        if (parts && !parts.item.hidden) parts.link.focus();
        note.close();
      };
    } catch (err) {
      // Some browsers (Chrome on Android) allow notifications only from a
      // service worker: the sound and the title still tell.
    }
  }

  // Browsers let a page make sound only after the user has interacted with
  // it: the audio context is made (or woken) on a click or key press.
  function unlockAudio() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!audio && Context) audio = new Context();
    if (audio && audio.state === "suspended") audio.resume();
  }
  document.addEventListener("pointerdown", unlockAudio);
  document.addEventListener("keydown", unlockAudio);

  // A short two-tone beep, made here (no audio file to fetch).
  function beep() {
    if (muted || !audio || audio.state !== "running") return;
    var start = audio.currentTime;
    [880, 1175].forEach(function (frequency, i) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      var at = start + i * 0.16;
      osc.type = "sine";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.14);
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start(at);
      osc.stop(at + 0.15);
    });
  }

  function showMuted() {
    muteButton.setAttribute("aria-pressed", muted ? "true" : "false");
    muteButton.title = muted
      ? gettext("No sound when a customer starts waiting")
      : gettext("A beep when a customer starts waiting");
  }

  muteButton.addEventListener("click", function () {
    muted = !muted;
    remember(MUTED_KEY, muted ? "1" : "0");
    showMuted();
  });

  function showPermission() {
    if (!("Notification" in window)) {
      notifyButton.hidden = true;
      return;
    }
    var permission = Notification.permission;
    notifyButton.disabled = permission !== "default";
    notifyButton.textContent =
      permission === "granted"
        ? gettext("Notifications are on")
        : permission === "denied"
          ? gettext("Notifications are blocked")
          : gettext("Turn on notifications");
    notifyButton.title = permission === "denied" ? gettext("Allow them in the browser's settings for this site") : "";
  }

  notifyButton.addEventListener("click", function () {
    unlockAudio();
    var asked = Notification.requestPermission(showPermission);
    if (asked && asked.then) asked.then(showPermission);
  });

  // --- Tabs and actions -------------------------------------------------------

  function selectTab(name, focus) {
    filter = name;
    remember(TAB_KEY, name);
    tabs.forEach(function (tab) {
      var selected = tab.dataset.filter === name;
      tab.setAttribute("aria-selected", selected ? "true" : "false");
      tab.tabIndex = selected ? 0 : -1;
      if (selected) {
        panel.setAttribute("aria-labelledby", tab.id);
        if (focus) tab.focus();
      }
    });
    applyFilter();
  }

  tabs.forEach(function (tab, i) {
    tab.addEventListener("click", function () {
      selectTab(tab.dataset.filter, false);
    });
    // Arrow keys move between tabs (the WAI-ARIA tabs pattern).
    tab.addEventListener("keydown", function (event) {
      var to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      selectTab(tabs[(to + tabs.length) % tabs.length].dataset.filter, true);
    });
  });

  function showError(text) {
    errorEl.textContent = text;
  }

  list.addEventListener("click", function (event) {
    var b = event.target.closest("button[data-action]");
    if (!b) return;
    var orderId = Number(b.closest(".conv").dataset.orderId);
    showError("");
    actions
      .run(b, orderId, b.dataset.action, function (message) {
        showError(interpolate(gettext("Order #%(id)s: %(text)s"), { id: orderId, text: message }, true));
      })
      .then(function (c) {
        // The stream brings the change too; this answer shows it at once,
        // unless the stream has already told of something newer.
        // (Not a notification: the agent did it.)
        var held = items[orderId];
        if (c && (!held || time(c.updated) >= time(held.updated))) {
          items[orderId] = c;
          render();
        }
      });
  });

  showMuted();
  showPermission();
  selectTab(filter, false);
  setInterval(tick, 1000);
  BookTimeLive.follow(streamUrl, connection, function (source) {
    source.addEventListener("inbox", function (event) {
      takeAll(JSON.parse(event.data));
    });
    source.addEventListener("conversation", function (event) {
      takeOne(JSON.parse(event.data));
    });
  });
})();
