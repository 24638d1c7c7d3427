// The customer-service dashboard: who is in which order chat, live, from
// the event stream's v2 form. DOM APIs only: data never becomes markup.
// Each change is passed on as a "booktime:presence" event, so that the
// inbox (inbox.js) shows which customers are in their chat without a
// stream of its own; the inbox owns the tab title.
(function () {
  "use strict";

  var list = document.getElementById("chats");
  var empty = document.getElementById("empty");
  var summary = document.getElementById("summary");
  var connection = document.getElementById("connection");
  var streamUrl = list.dataset.stream;
  var clockOffset = 0; // the server's clock minus ours, in seconds

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function serverNow() {
    return Date.now() / 1000 + clockOffset;
  }

  function clockTime(epochSeconds) {
    return new Date((epochSeconds - clockOffset) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function chatItem(chat) {
    var item = el("li", chat.employee_present ? "chat" : "chat waiting");
    item.dataset.orderId = chat.order_id;

    var top = el("div", "chat-top");
    var title = el("a", "chat-title", "Order #" + chat.order_id);
    title.href = chat.link;
    top.appendChild(title);
    var badge;
    if (chat.waiting_since !== null) {
      badge = el("span", "badge alone");
      badge.dataset.waitingSince = chat.waiting_since;
      badge.title = "No employee in this chat since " + clockTime(chat.waiting_since);
    } else {
      badge = el("span", "badge served", "Employee present");
    }
    top.appendChild(badge);
    item.appendChild(top);

    var people = el("ul", "people");
    chat.present.forEach(function (person) {
      var entry = el("li", "person " + person.role, person.email);
      entry.appendChild(el("span", "role", person.role === "employee" ? "employee" : "since " + clockTime(person.since)));
      people.appendChild(entry);
    });
    item.appendChild(people);

    var last = chat.last_spoken_to;
    item.appendChild(
      el("p", "last-spoken", last ? "Last spoken to by " + last.name + " (" + last.email + ")" : "No employee has spoken to them yet")
    );
    return item;
  }

  var chats = {}; // order id -> chat, as the stream last said

  // The stream sends the whole list first, then only what changed.
  function apply(data) {
    if (data.chats) {
      chats = {};
      data.chats.forEach(function (chat) { chats[chat.order_id] = chat; });
    } else {
      data.changed.forEach(function (chat) { chats[chat.order_id] = chat; });
      data.removed.forEach(function (orderId) { delete chats[orderId]; });
    }
    // Waiting chats first, the longest wait first; then by order.
    var sorted = Object.keys(chats).map(function (id) { return chats[id]; });
    sorted.sort(function (a, b) {
      var aw = a.waiting_since === null, bw = b.waiting_since === null;
      if (aw !== bw) return aw ? 1 : -1;
      if (!aw && a.waiting_since !== b.waiting_since) return a.waiting_since - b.waiting_since;
      return a.order_id - b.order_id;
    });
    render({ now: data.now, chats: sorted });
    document.dispatchEvent(new CustomEvent("booktime:presence", { detail: { chats: sorted } }));
  }

  function render(data) {
    clockOffset = data.now - Date.now() / 1000;
    list.replaceChildren.apply(list, data.chats.map(chatItem));
    empty.hidden = data.chats.length > 0;
    var waiting = data.chats.filter(function (c) { return c.waiting_since !== null; }).length;
    summary.replaceChildren();
    if (waiting) {
      summary.appendChild(el("strong", "", waiting + (waiting === 1 ? " customer chat" : " customer chats") + " waiting with no employee"));
      summary.appendChild(document.createTextNode(" · " + data.chats.length + " active"));
    } else {
      summary.textContent = data.chats.length ? data.chats.length + " active, nobody waiting alone" : "";
    }
    tick();
  }

  // Waiting times count up every second between events.
  function tick() {
    list.querySelectorAll("[data-waiting-since]").forEach(function (badge) {
      badge.textContent = "Waiting " + BookTimeLive.duration(1000 * (serverNow() - Number(badge.dataset.waitingSince)));
    });
  }

  setInterval(tick, 1000);
  BookTimeLive.follow(streamUrl, connection, function (source) {
    source.onmessage = function (event) {
      apply(JSON.parse(event.data));
    };
  });
})();
