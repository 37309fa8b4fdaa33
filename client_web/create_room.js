// Home page: "Create a room" asks the server for a room link, copies it, and offers to open it.
"use strict";

(() => {
  const button = document.getElementById("create-room");
  const link = document.getElementById("room-link");
  const message = document.getElementById("room-message");
  const say = (text, isError = false) => { message.textContent = text; message.classList.toggle("error", isError); };

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const r = await fetch("/v1/rooms", { method: "POST" });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) { say(body.error || `Could not create a room (HTTP ${r.status}).`, true); return; }
      const url = new URL(body.url, location.href).href;
      link.href = url;
      link.hidden = false;
      try {
        await navigator.clipboard.writeText(url);
        say(`Link copied: ${url}`);
      } catch {
        say(`Share this link: ${url}`);
      }
    } catch {
      say("The server cannot be reached.", true);
    } finally {
      button.disabled = false;
    }
  });
})();
