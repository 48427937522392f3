// Agent console: keeps the agent's or admin's key in this tab's sessionStorage and sends it as a header with
// every request, then swaps the server-rendered fragments into place. No framework: the server renders all the
// HTML (escaped), in the page's language; the few strings this script shows come from the page's catalogue.
"use strict";
const KEY = "kefu.feedback.adminKey";
const $ = (id) => document.getElementById(id);
let messages = {};
let lang = "zh";
let answersPage = 1;

function t(key, values) {
  let text = messages[key] || key;
  for (const [name, value] of Object.entries(values || {})) text = text.replaceAll(`{${name}}`, value);
  return text;
}

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

// Every fragment URL carries the page's language, so server-rendered parts match the page.
function withLang(url) {
  return url + (url.includes("?") ? "&" : "?") + "lang=" + encodeURIComponent(lang);
}

function showSignedIn(who) {
  const signedIn = Boolean(who);
  $("key-form").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
  $("tabs").hidden = !signedIn;
  $("hint").hidden = signedIn;
  $("tab-review").hidden = !(who && who.role === "admin");
  if (!signedIn) {
    for (const id of ["answers-view", "review-view"]) $(id).hidden = true;
    $("answers").innerHTML = "";
    $("queue").innerHTML = "";
    return;
  }
  $("who").textContent = t("signed_in", { name: who.name || who.key_id, role: t("role_" + who.role) });
}

function forget() {
  sessionStorage.removeItem(KEY);
  showSignedIn(null);
}

async function call(method, url, body) {
  const response = await fetch(withLang(url), {
    method, body, headers: { "X-API-Key": sessionStorage.getItem(KEY) || "" }, cache: "no-store",
  });
  if (response.ok) return response.text();
  let message = response.statusText;
  try { message = (await response.json()).error.message; } catch (_) { /* not our JSON error shape */ }
  if (response.status === 401) forget();
  throw new Error(`${response.status}: ${message}`);
}

function show(viewId) {
  for (const id of ["answers-view", "review-view"]) $(id).hidden = id !== viewId;
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === viewId));
  }
  if (viewId === "answers-view") loadAnswers(answersPage); else loadQueue();
}

async function signIn() {
  try {
    const who = JSON.parse(await call("GET", "/v1/me"));
    showSignedIn(who);
    say("", false);
    show("answers-view");
  } catch (err) {
    say(err.message.startsWith("403") ? `403: ${t("forbidden_role")}` : err.message, true);
    if (err.message.startsWith("403")) forget();
  }
}

async function loadAnswers(page) {
  answersPage = page;
  const params = new URLSearchParams(new FormData($("search")));
  params.set("page", String(page));
  try {
    $("answers").innerHTML = await call("GET", "/ui/answers?" + params.toString());
    say("", false);
  } catch (err) { say(err.message, true); }
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
    say(t("reviewed_" + action, { id }), false);
  } catch (err) { say(err.message, true); }
}

async function flagAnswer(form) {
  const id = form.dataset.answerId;
  try {
    const html = await call("POST", `/ui/answers/${encodeURIComponent(id)}/flag`, new FormData(form));
    document.getElementById(`log-${id}`).outerHTML = html;
    say(t("flagged_ok"), false);
  } catch (err) { say(err.message, true); }
}

async function proposeEntry(form) {
  const id = form.dataset.answerId;
  try {
    const html = await call("POST", `/ui/unanswered/${encodeURIComponent(id)}`, new FormData(form));
    document.getElementById(`answer-${id}`).outerHTML = html;
    say(t("proposed", { id }), false);
  } catch (err) { say(err.message, true); }
}

document.addEventListener("DOMContentLoaded", () => {
  messages = JSON.parse($("messages").textContent);
  lang = document.body.dataset.lang || "zh";
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    signIn();
  });
  $("forget").addEventListener("click", forget);
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.addEventListener("click", () => show(tab.dataset.view));
  }
  $("search").addEventListener("submit", (event) => { event.preventDefault(); loadAnswers(1); });
  $("answers").addEventListener("click", (event) => {
    const button = event.target.closest("button.page");
    if (button) loadAnswers(Number(button.dataset.page));
    // The whole chat around an answer: every turn with its conversation id, oldest context on the next rows.
    const chat = event.target.closest("button.conversation");
    if (chat) {
      $("conversation").value = chat.dataset.conversation;
      loadAnswers(1);
    }
  });
  $("answers").addEventListener("submit", (event) => {
    if (!event.target.matches("form.flag-answer")) return;
    event.preventDefault();
    flagAnswer(event.target);
  });
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
  $("queue").addEventListener("submit", (event) => {
    if (event.target.matches("form.new-entry")) {
      event.preventDefault();
      proposeEntry(event.target);
      return;
    }
    if (!event.target.matches("form.review")) return;
    event.preventDefault();
    review(event.target, event.submitter ? event.submitter.value : "approve");
  });
  // The language links keep the key: it lives in this tab's sessionStorage, which survives the navigation.
  showSignedIn(null);
  if (sessionStorage.getItem(KEY)) signIn();
});
