// Speech2Face Live — room page. Plain JS, no build step.
//
// Two peer connections: the microphone goes to our server (which draws this person's
// avatar and publishes it, with their voice, into the room's Janus); everyone's avatars
// come from Janus on a second, receive-only connection. This page never talks to Janus's
// API: our server relays Janus's offers over the room websocket and our answers back, and
// tells us who is in the room. A tile per person: their avatar, name, a speaking light
// and their voice (our own tile is muted).
"use strict";

const $ = (id) => document.getElementById(id);
const ROOM = decodeURIComponent(location.pathname.replace(/^\/r\//, "").replace(/\/$/, ""));
const SPEAKING_LEVEL = 0.02; // WebRTC audioLevel (0..1) above which a light turns on
const NAME_KEY = "s2f-room-name";

const room = {
  ws: null,
  mic: null,
  micPc: null,
  channel: null,
  sub: null,
  id: null,
  cap: null,
  iceServers: [],
  streams: new Map(), // subscriber mid → {feed, type, self}
  tiles: new Map(), // feed id → {el, video, stream, name, self}
  roster: [],
  joining: false,
  heard: 0,
  answerChain: Promise.resolve(),
  speakingTimer: null,
};
window.s2fRoom = room; // for tests and the curious

function setMessage(text, isError = false) {
  const el = $("message");
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}

function setCount(n, cap) {
  if (n === null || n === undefined) { $("count").textContent = ""; return; }
  $("count").textContent = `${n} of ${cap} in the call`;
}

function waitForIceGathering(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => { pc.removeEventListener("icegatheringstatechange", done); resolve(); }, timeoutMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

function micErrorText(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused. Allow the microphone for this page and press Join again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in and press Join again.";
    case "NotReadableError":
      return "The microphone is busy in another application.";
    default:
      return `Could not open the microphone: ${err && err.message ? err.message : err}`;
  }
}

// --- tiles ---
function tileFor(feed, name, self) {
  let tile = room.tiles.get(feed);
  if (!tile) {
    const el = $("tile-template").content.firstElementChild.cloneNode(true);
    const video = el.querySelector("video");
    video.muted = self; // our own voice is not played back to us
    el.dataset.feed = feed;
    if (self) el.classList.add("self");
    video.addEventListener("playing", () => el.classList.add("live"));
    tile = { el, video, stream: null, name, self };
    room.tiles.set(feed, tile);
    const tiles = $("tiles");
    if (self) tiles.prepend(el); else tiles.appendChild(el);
  }
  tile.name = name;
  tile.el.querySelector(".who").textContent = self ? `${name} (you)` : name;
  return tile;
}

function removeTile(feed) {
  const tile = room.tiles.get(feed);
  if (!tile) return;
  tile.video.srcObject = null;
  tile.el.remove();
  room.tiles.delete(feed);
}

function showRoster(people) {
  room.roster = people;
  const ids = new Set(people.map((p) => p.id));
  for (const feed of [...room.tiles.keys()]) if (!ids.has(feed)) removeTile(feed);
  for (const p of people) tileFor(p.id, p.name, !!p.self);
  setCount(people.length, room.cap);
}

function attachStream(feed, stream) {
  const person = room.roster.find((p) => p.id === feed);
  const tile = tileFor(feed, person ? person.name : "…", feed === room.id);
  if (tile.stream !== stream) {
    tile.stream = stream;
    tile.video.srcObject = stream;
  }
  tile.video.play().catch(() => {});
}

// --- speaking lights: the level of the voice we receive (ours: what the mic sends) ---
async function levelsOf(pc, keep) {
  const out = [];
  if (!pc) return out;
  try {
    (await pc.getStats()).forEach((s) => { if (keep(s) && typeof s.audioLevel === "number") out.push([s, s.audioLevel]); });
  } catch { /* closing */ }
  return out;
}

async function pollSpeaking() {
  const levels = new Map();
  for (const [s, level] of await levelsOf(room.sub, (s) => s.type === "inbound-rtp" && s.kind === "audio")) {
    const info = room.streams.get(s.mid);
    if (info) levels.set(info.feed, level);
  }
  for (const [, level] of await levelsOf(room.micPc, (s) => s.type === "media-source" && s.kind === "audio")) levels.set(room.id, level);
  for (const [feed, tile] of room.tiles) tile.el.classList.toggle("speaking-now", (levels.get(feed) || 0) > SPEAKING_LEVEL);
}

// --- Janus's offers, relayed by our server ---
function onMediaOffer(msg) {
  room.answerChain = room.answerChain.then(() => answerOffer(msg)).catch((err) => {
    console.error(err);
    setMessage(`Could not receive the others' video: ${err && err.message ? err.message : err}`, true);
  });
}

async function answerOffer(msg) {
  if (msg.restart || !room.sub) {
    if (room.sub) { try { room.sub.close(); } catch { /* closed */ } }
    room.streams.clear();
    const pc = new RTCPeerConnection({ iceServers: room.iceServers });
    room.sub = pc;
    pc.ontrack = (ev) => {
      const stream = ev.streams && ev.streams[0];
      const info = room.streams.get(ev.transceiver.mid);
      const feed = stream ? stream.id : info && info.feed;
      if (feed) attachStream(feed, stream || new MediaStream([ev.track]));
    };
    pc.onconnectionstatechange = () => {
      if (room.sub === pc && pc.connectionState === "failed") setMessage("The connection to the call's media relay failed.", true);
    };
  }
  for (const s of msg.streams || []) room.streams.set(s.mid, s);
  const pc = room.sub;
  await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await waitForIceGathering(pc);
  send({ type: "media-answer", sdp: pc.localDescription.sdp });
}

function send(msg) {
  if (room.ws && room.ws.readyState === WebSocket.OPEN) room.ws.send(JSON.stringify(msg));
}

// --- join / leave ---
async function join() {
  if (room.ws || room.joining) return;
  room.joining = true;
  $("join").disabled = true;
  setMessage("Opening the microphone…");
  const name = $("name").value.trim();
  try { localStorage.setItem(NAME_KEY, name); } catch { /* private mode */ }
  try {
    try {
      room.mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
        video: false,
      });
    } catch (err) {
      setMessage(micErrorText(err), true);
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: room.iceServers });
    room.micPc = pc;
    for (const track of room.mic.getAudioTracks()) pc.addTrack(track, room.mic);
    const channel = pc.createDataChannel("status", { ordered: true });
    room.channel = channel;
    channel.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if ((msg.type === "status" || msg.type === "hello") && room.id) {
        room.heard = msg.speech_seconds || 0;
        const tile = room.tiles.get(room.id);
        if (tile) tile.el.querySelector(".detail").textContent = `${room.heard.toFixed(1)} s heard`;
      }
    };
    setMessage("Connecting…");
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/rooms/${encodeURIComponent(ROOM)}/ws`);
    room.ws = ws;
    ws.onopen = () => send({ type: "join", name, offer: { sdp: pc.localDescription.sdp, type: "offer" } });
    ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    ws.onclose = () => { if (room.ws === ws) hangUp("The connection to the server was lost. Press Join to come back.", true); };
  } catch (err) {
    console.error(err);
    hangUp(`Something went wrong: ${err && err.message ? err.message : err}`, true);
  } finally {
    room.joining = false;
    if (!room.ws) $("join").disabled = false;
  }
}

async function onMessage(msg) {
  switch (msg.type) {
    case "joined":
      room.id = msg.id;
      room.cap = msg.cap;
      room.iceServers = msg.ice_servers || [];
      await room.micPc.setRemoteDescription(msg.answer);
      $("lobby").hidden = true;
      $("leave").disabled = false;
      setMessage("You are in. Just talk — your face develops as you speak.");
      room.speakingTimer = setInterval(pollSpeaking, 300);
      break;
    case "roster":
      showRoster(msg.participants);
      break;
    case "media-offer":
      onMediaOffer(msg);
      break;
    case "media-status":
      setMessage(msg.state === "up" ? "" : msg.message, msg.state !== "up");
      break;
    case "error": {
      let text = msg.error;
      if (msg.status === 503 && msg.retry_after) text += ` (retry in ${msg.retry_after} s)`;
      if (!room.id) hangUp(text, true); else setMessage(text, true);
      break;
    }
    case "bye": {
      const why = {
        idle: "We stopped hearing your microphone, so you left the call. Press Join to come back.",
        room_full: $("message").textContent,
        shutdown: "The server is restarting. Press Join in a moment.",
      }[msg.reason];
      hangUp(why || "You left the call.", !!why);
      break;
    }
    default:
      break;
  }
}

function hangUp(message = "", isError = false) {
  const ws = room.ws;
  room.ws = null;
  if (ws && ws.readyState === WebSocket.OPEN) {
    try { ws.send(JSON.stringify({ type: "leave" })); } catch { /* closing */ }
    ws.close();
  }
  for (const pc of [room.micPc, room.sub]) if (pc) { try { pc.close(); } catch { /* closed */ } }
  room.micPc = room.sub = room.channel = null;
  if (room.mic) room.mic.getTracks().forEach((t) => t.stop());
  room.mic = null;
  room.id = null;
  clearInterval(room.speakingTimer);
  for (const feed of [...room.tiles.keys()]) removeTile(feed);
  room.streams.clear();
  $("lobby").hidden = false;
  $("join").disabled = false;
  $("leave").disabled = true;
  setMessage(message, isError);
  refreshInfo(false); // the count only: our own leave may not have reached the server yet
}

async function refreshInfo(showStatus = true) {
  try {
    const r = await fetch(`/v1/rooms/${encodeURIComponent(ROOM)}`);
    const info = await r.json();
    if (!r.ok) {
      setMessage(info.error || `This room is not available (HTTP ${r.status}).`, true);
      $("join").disabled = true;
      return;
    }
    room.cap = info.cap;
    if (!room.ws) {
      setCount(info.participants, info.cap);
      if (!showStatus) return;
      if (info.message) setMessage(info.message, true);
      else if (info.full) setMessage(`This room is full (${info.cap} people). Try again when someone leaves.`, true);
    }
  } catch {
    setMessage("The server cannot be reached.", true);
  }
}

function init() {
  $("room-name").textContent = ROOM;
  try { $("name").value = localStorage.getItem(NAME_KEY) || ""; } catch { /* private mode */ }
  $("join").addEventListener("click", join);
  $("leave").addEventListener("click", () => hangUp("You left the call."));
  $("copy-link").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(location.href);
      setMessage("Link copied — send it to the people you want in this call.");
    } catch {
      setMessage(`Share this link: ${location.href}`);
    }
  });
  window.addEventListener("pagehide", () => hangUp());
  if (!window.RTCPeerConnection || !navigator.mediaDevices) {
    setMessage("This browser cannot join calls (no WebRTC, or the page is not on https).", true);
    $("join").disabled = true;
    return;
  }
  refreshInfo();
}

init();
