// Employees' actions on a conversation (claim, release, resolve, reopen)
// through the REST API with the page's session, shared by the inbox and the
// chat page (docs/mobile-api.md, "Conversations"). Session POSTs need
// Django's CSRF token, which the pages' views set as a cookie.
window.BookTimeConversations = (function () {
  "use strict";

  var LABELS = { claim: gettext("Claim"), release: gettext("Release"), resolve: gettext("Resolve"), reopen: gettext("Reopen") };
  var BUSY = {
    claim: gettext("Claiming…"),
    release: gettext("Releasing…"),
    resolve: gettext("Resolving…"),
    reopen: gettext("Reopening…"),
  };

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // What went wrong, said for people.
  function problem(status, body) {
    if (body && body.code === "held") {
      var holder = body.assigned_to && body.assigned_to.name;
      return holder
        ? interpolate(gettext("%(name)s already holds this conversation."), { name: holder }, true)
        : body.detail || gettext("Someone else holds it.");
    }
    if (status === 403 && body && /CSRF/.test(body.detail || "")) {
      return gettext("Your session has changed. Reload the page and try again.");
    }
    if (status === 401 || status === 403) return gettext("You are no longer allowed to do this. Log in again.");
    if (status === 503) return gettext("The server is busy for a moment. Try again shortly.");
    if (body && body.detail) return body.detail; // in the page's language (the API's Accept-Language)
    return interpolate(gettext("The server answered with an error (%(status)s). Try again."), { status: status }, true);
  }

  // Resolves with the conversation as it is after the action; rejects with
  // an Error whose message can be shown as it is.
  function act(orderId, action) {
    var url = "/mobile-api/conversations/" + encodeURIComponent(orderId) + "/" + action + "/";
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json", "Content-Type": "application/json" },
      body: "{}",
    }).then(
      function (response) {
        return response
          .json()
          .catch(function () {
            return null;
          })
          .then(function (body) {
            if (response.ok) return body;
            throw new Error(problem(response.status, body));
          });
      },
      function () {
        throw new Error(gettext("The server could not be reached. Check your connection and try again."));
      }
    );
  }

  // A button that runs an action: busy (but still focusable, so keyboard
  // users keep their place) until the answer comes.
  function run(button, orderId, action, onError) {
    if (button.getAttribute("aria-disabled") === "true") return Promise.resolve(null);
    button.setAttribute("aria-disabled", "true");
    button.textContent = BUSY[action];
    return act(orderId, action)
      .then(null, function (error) {
        onError(error.message);
        return null;
      })
      .then(function (conversation) {
        button.removeAttribute("aria-disabled");
        button.textContent = LABELS[action];
        return conversation;
      });
  }

  return { run: run, LABELS: LABELS };
})();
