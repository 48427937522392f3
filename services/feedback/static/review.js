// Review page: keeps the admin key in this tab's sessionStorage and sends it as a header with every request,
// then swaps the server-rendered fragments into place. No framework: the server renders all the HTML.
"use strict";
const KEY = "kefu.feedback.adminKey";
const $ = (id) => document.getElementById(id);

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function showSignedIn(signedIn) {
  $("key-form").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
  $("controls").hidden = !signedIn;
  if (!signedIn) $("queue").innerHTML = '<p class="hint">Enter an admin key to load the queue.</p>';
}

async function call(method, url, body) {
  const response = await fetch(url, {
    method, body, headers: { "X-API-Key": sessionStorage.getItem(KEY) || "" }, cache: "no-store",
  });
  if (response.ok) return response.text();
  let message = response.statusText;
  try { message = (await response.json()).error.message; } catch (_) { /* not our JSON error shape */ }
  if (response.status === 401) { sessionStorage.removeItem(KEY); showSignedIn(false); }
  throw new Error(`${response.status}: ${message}`);
}

async function loadQueue() {
  const status = $("status").value;
  const url = status === "unanswered" ? "/ui/unanswered" : "/ui/flags?status=" + encodeURIComponent(status);
  try {
    $("queue").innerHTML = await call("GET", url);
    say("", false);
  } catch (err) { say(err.message, true); }
}

async function review(form, action) {
  const data = new FormData(form);
  data.set("action", action);
  const id = form.dataset.flagId;
  try {
    const html = await call("POST", `/ui/flags/${encodeURIComponent(id)}/review`, data);
    document.getElementById(`flag-${id}`).outerHTML = html;
    say(`Flag ${id}: ${action === "reject" ? "rejected" : "approved"}.`, false);
  } catch (err) { say(err.message, true); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    showSignedIn(true);
    loadQueue();
  });
  $("forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); showSignedIn(false); });
  $("refresh").addEventListener("click", loadQueue);
  $("status").addEventListener("change", loadQueue);
  $("release").addEventListener("click", async () => {
    try {
      const html = await call("POST", "/ui/releases");  // server-rendered and escaped, like every fragment
      await loadQueue();
      $("message").innerHTML = html;
      $("message").className = "";
    } catch (err) { say(err.message, true); }
  });
  $("queue").addEventListener("submit", async (event) => {
    if (event.target.matches("form.new-entry")) {
      event.preventDefault();
      const id = event.target.dataset.answerId;
      try {
        const html = await call("POST", `/ui/unanswered/${encodeURIComponent(id)}`, new FormData(event.target));
        document.getElementById(`answer-${id}`).outerHTML = html;
        say(`Proposed a new entry for answer ${id}; it is in the open queue for review.`, false);
      } catch (err) { say(err.message, true); }
      return;
    }
    if (!event.target.matches("form.review")) return;
    event.preventDefault();
    review(event.target, event.submitter ? event.submitter.value : "approve");
  });
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  showSignedIn(signedIn);
  if (signedIn) loadQueue();
});
