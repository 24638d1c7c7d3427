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
    return BookTimeLocale.time(new Date((epochSeconds - clockOffset) * 1000));
  }

  function chatItem(chat) {
    var item = el("li", chat.employee_present ? "chat" : "chat waiting");
    item.dataset.orderId = chat.order_id;

    var top = el("div", "chat-top");
    var title = el("a", "chat-title", interpolate(gettext("Order #%(id)s"), { id: chat.order_id }, true));
    title.href = chat.link;
    top.appendChild(title);
    var badge;
    if (chat.waiting_since !== null) {
      badge = el("span", "badge alone");
      badge.dataset.waitingSince = chat.waiting_since;
      badge.title = interpolate(gettext("No employee in this chat since %(time)s"), { time: clockTime(chat.waiting_since) }, true);
    } else {
      badge = el("span", "badge served", gettext("Employee present"));
    }
    top.appendChild(badge);
    item.appendChild(top);

    var people = el("ul", "people");
    chat.present.forEach(function (person) {
      var entry = el("li", "person " + person.role, person.email);
      var role =
        person.role === "employee"
          ? gettext("employee")
          : interpolate(gettext("since %(time)s"), { time: clockTime(person.since) }, true);
      entry.appendChild(el("span", "role", role));
      people.appendChild(entry);
    });
    item.appendChild(people);

    var last = chat.last_spoken_to;
    item.appendChild(
      el(
        "p",
        "last-spoken",
        last
          ? interpolate(gettext("Last spoken to by %(name)s (%(email)s)"), { name: last.name, email: last.email }, true)
          : gettext("No employee has spoken to them yet")
      )
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
      var alone = ngettext(
        "%(count)s customer chat waiting with no employee",
        "%(count)s customer chats waiting with no employee",
        waiting
      );
      summary.appendChild(el("strong", "", interpolate(alone, { count: waiting }, true)));
      var active = interpolate(gettext("%(count)s active"), { count: data.chats.length }, true);
      summary.appendChild(document.createTextNode(" · " + active));
    } else {
      var calm = gettext("%(count)s active, nobody waiting alone");
      summary.textContent = data.chats.length ? interpolate(calm, { count: data.chats.length }, true) : "";
    }
    tick();
  }

  // Waiting times count up every second between events.
  function tick() {
    list.querySelectorAll("[data-waiting-since]").forEach(function (badge) {
      var waited = BookTimeLive.duration(1000 * (serverNow() - Number(badge.dataset.waitingSince)));
      badge.textContent = interpolate(gettext("Waiting %(time)s"), { time: waited }, true);
    });
  }

  setInterval(tick, 1000);
  BookTimeLive.follow(streamUrl, connection, function (source) {
    source.onmessage = function (event) {
      apply(JSON.parse(event.data));
    };
  });
})();
