// What the live pages share: an event stream that reconnects, and a wait
// shown as h:mm:ss.
window.BookTimeLive = (function () {
  "use strict";

  // "m:ss", or "h:mm:ss" past an hour, for a number of milliseconds.
  function duration(ms) {
    var seconds = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = String(seconds % 60).padStart(2, "0");
    return h ? h + ":" + String(m).padStart(2, "0") + ":" + s : m + ":" + s;
  }

  // Follow the event stream at `url`, `listen(source)` attaching its
  // handlers to each connection, `connection` (an element) saying whether
  // it is live. EventSource retries by itself after a dropped stream, but
  // gives up for good on an error status (403, 503): then we reconnect,
  // backing off.
  function follow(url, connection, listen) {
    var retryDelay = 1000;

    function show(state, text) {
      connection.className = "conn " + state;
      connection.textContent = text;
    }

    function connect() {
      var source = new EventSource(url);
      source.onopen = function () {
        retryDelay = 1000;
        show("live", gettext("Live"));
      };
      listen(source);
      source.onerror = function () {
        show("down", gettext("Reconnecting…"));
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          setTimeout(connect, retryDelay);
          retryDelay = Math.min(retryDelay * 2, 30000);
        }
      };
    }

    connect();
  }

  return { duration: duration, follow: follow };
})();
