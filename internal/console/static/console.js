// berth console: confirm before a stop, and follow a session's log.
"use strict";

document.addEventListener("submit", (ev) => {
  const msg = ev.target.dataset.confirm;
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
  }
});

async function follow(pre) {
  const resp = await fetch(pre.dataset.src);
  if (!resp.ok) {
    pre.textContent = "log: " + resp.status + " " + (await resp.text());
    return;
  }
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      pre.dataset.done = "true";
      return;
    }
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(dec.decode(value, { stream: true }));
    if (atEnd) {
      pre.scrollTop = pre.scrollHeight;
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const pre = document.getElementById("log");
  if (pre) {
    follow(pre).catch((err) => {
      pre.append("\n[log stream ended: " + err + "]");
    });
  }
});
