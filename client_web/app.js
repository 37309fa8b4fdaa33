// Speech2Face Live — browser client. Plain JS, no build step.
//
// Join: microphone (with the browser's voice processing OFF: echo cancellation, noise
// suppression and auto gain change the very voice the server analyses) → one
// RTCPeerConnection sending audio and receiving the avatar video → a datachannel for
// status → wait for ICE gathering to complete (aiortc does not trickle) → POST /offer.
"use strict";

const $ = (id) => document.getElementById(id);
const RING_LENGTH = 2 * Math.PI * 56;

const state = {
  pc: null,
  mic: null,
  channel: null,
  callId: null,
  confidentSeconds: 6,
  iceServers: [],
  joining: false,
  status: null, // the last status event
  framesSeen: 0, // per-frame events received (lip-sync telemetry)
};
window.s2f = state; // for tests and the curious

function setMessage(text, isError = false) {
  const el = $("message");
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}

function setRing(seconds) {
  const frac = Math.max(0, Math.min(1, seconds / state.confidentSeconds));
  $("ring-fill").style.strokeDashoffset = String(RING_LENGTH * (1 - frac));
  $("avatar-frame").classList.toggle("confident", frac >= 1);
  $("heard").textContent = seconds.toFixed(1);
}

function setDownloads(enabled) {
  for (const [id, fmt] of [["dl-png", "png"], ["dl-svg", "svg"]]) {
    const a = $(id);
    if (enabled && state.callId) {
      a.href = `/v1/calls/${state.callId}/avatar?format=${fmt}&size=${$("size").value}`;
      a.classList.remove("disabled");
      a.removeAttribute("aria-disabled");
    } else {
      a.removeAttribute("href");
      a.classList.add("disabled");
      a.setAttribute("aria-disabled", "true");
    }
  }
}

function pct(x) { return `${Math.round(100 * x)} %`; }

function showStatus(msg) {
  state.status = msg;
  const heard = msg.speech_seconds || 0;
  setRing(heard);
  const g = msg.gender || {};
  const pf = typeof g.p_female === "number" ? g.p_female : 0.5;
  const heardEnough = (msg.version || 0) > 0 && (msg.confidence || 0) > 0;
  if (heardEnough) {
    const lean = Math.abs(pf - 0.5) < 0.1 ? "androgynous" : (pf > 0.5 ? "feminine" : "masculine");
    $("gender").textContent = lean;
    $("gender-p").textContent = `p(feminine) ${pf.toFixed(2)}`;
    const age = msg.age || {};
    $("age").textContent = age.label || "—";
    const probs = age.probs || {};
    $("age-probs").textContent = Object.entries(probs).map(([k, v]) => `${k} ${pct(v)}`).join(" · ");
  } else {
    $("gender").textContent = "listening…";
    $("gender-p").textContent = "";
    $("age").textContent = "listening…";
    $("age-probs").textContent = "";
  }
  $("gender-meter").value = pf;
  $("confidence").value = msg.confidence || 0;
  $("confidence-v").textContent = pct(msg.confidence || 0);
  $("version").textContent = String(msg.version || 0);
  $("engine-msg").textContent = msg.message || "";
  setDownloads(true);
}

function resetBeliefs() {
  setRing(0);
  for (const id of ["gender", "age"]) $(id).textContent = "—";
  for (const id of ["gender-p", "age-probs", "engine-msg"]) $(id).textContent = "";
  $("confidence").value = 0;
  $("confidence-v").textContent = "0 %";
  $("version").textContent = "0";
}

function micErrorText(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused. Allow the microphone for this page (the icon in the address bar) and press Join again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in and press Join again.";
    case "NotReadableError":
      return "The microphone is busy in another application.";
    default:
      return `Could not open the microphone: ${err && err.message ? err.message : err}`;
  }
}

function waitForIceGathering(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(() => { pc.removeEventListener("icegatheringstatechange", done); resolve(); }, timeoutMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

async function loadOptions() {
  try {
    const r = await fetch("/v1/options");
    if (!r.ok) return;
    const o = await r.json();
    state.confidentSeconds = o.confident_seconds || 6;
    state.iceServers = o.ice_servers || [];
    $("confident-s").textContent = String(state.confidentSeconds);
    const sel = $("skin-tone");
    for (const tone of o.skin_tones || []) {
      const opt = document.createElement("option");
      opt.value = tone;
      opt.textContent = tone.replace("_", " ");
      sel.appendChild(opt);
    }
    if (o.default_size) $("size").value = String(o.default_size);
    if (o.default_privacy) $("privacy").value = o.default_privacy;
    $("room-label").hidden = $("privacy").value !== "room";
  } catch (e) {
    console.warn("options unavailable", e);
  }
}

function sendControl(msg) {
  if (state.channel && state.channel.readyState === "open") state.channel.send(JSON.stringify(msg));
}

async function join() {
  if (state.pc || state.joining) return;
  state.joining = true;
  $("join").disabled = true;
  setMessage("Opening the microphone…");
  try {
    try {
      state.mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
        video: false,
      });
    } catch (err) {
      setMessage(micErrorText(err), true);
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: state.iceServers });
    state.pc = pc;
    for (const track of state.mic.getAudioTracks()) pc.addTrack(track, state.mic);
    pc.addTransceiver("video", { direction: "recvonly" });
    const channel = pc.createDataChannel("status", { ordered: true });
    state.channel = channel;
    channel.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === "frame") { state.framesSeen += 1; state.lastFrame = msg; return; }
      if (msg.type === "status" || msg.type === "hello") showStatus(msg);
      else if (msg.type === "error") setMessage(msg.error, true);
    };
    channel.onclose = () => { if (state.pc === pc) hangUp("The call ended."); };

    pc.ontrack = (ev) => {
      if (ev.track.kind !== "video") return;
      const video = $("avatar");
      video.srcObject = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
      video.play().catch(() => {});
      $("avatar-frame").classList.add("live");
    };
    pc.onconnectionstatechange = () => {
      if (state.pc !== pc) return;
      if (pc.connectionState === "connected") setMessage("Listening — just talk.");
      else if (pc.connectionState === "failed") hangUp("The connection failed. Press Join to try again.", true);
    };

    setMessage("Connecting…");
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    const privacy = $("privacy").value;
    const body = {
      sdp: pc.localDescription.sdp,
      type: pc.localDescription.type,
      privacy,
      size: parseInt($("size").value, 10),
      skin_tone: $("skin-tone").value,
      seed: lookSeed(),
      // per-frame mouth telemetry only when asked for (?frame_events=1): it costs the server CPU
      frame_events: new URLSearchParams(location.search).get("frame_events") === "1",
    };
    if (privacy === "room") body.room = $("room").value.trim() || "lobby";
    let resp;
    try {
      resp = await fetch("/offer", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    } catch (err) {
      hangUp("The server cannot be reached.", true);
      return;
    }
    if (!resp.ok) {
      let reason = `HTTP ${resp.status}`;
      try { reason = (await resp.json()).error || reason; } catch { /* not JSON */ }
      if (resp.status === 503) {
        const wait = resp.headers.get("Retry-After");
        hangUp(`The server is full right now (${reason}). Try again${wait ? ` in ${wait} s` : " shortly"}.`, true);
      } else {
        hangUp(`The server refused the call: ${reason}`, true);
      }
      return;
    }
    const answer = await resp.json();
    state.callId = answer.call_id;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    $("leave").disabled = false;
  } catch (err) {
    console.error(err);
    hangUp(`Something went wrong: ${err && err.message ? err.message : err}`, true);
  } finally {
    state.joining = false;
    if (!state.pc) $("join").disabled = false;
  }
}

function hangUp(message = "", isError = false) {
  const pc = state.pc;
  state.pc = null;
  if (state.channel && state.channel.readyState === "open") {
    try { state.channel.send(JSON.stringify({ type: "bye" })); } catch { /* closing */ }
  }
  state.channel = null;
  if (pc) {
    try { pc.close(); } catch { /* already closed */ }
  }
  if (state.mic) state.mic.getTracks().forEach((t) => t.stop());
  state.mic = null;
  state.callId = null;
  const video = $("avatar");
  video.srcObject = null;
  $("avatar-frame").classList.remove("live");
  $("join").disabled = false;
  $("leave").disabled = true;
  setDownloads(false);
  resetBeliefs();
  setMessage(message, isError);
}

// The look seed: the caller's own, random, kept in this browser only. It picks skin, hair
// and eye colours (the voice never does); "New look" draws another.
const LOOK_KEY = "speech2face.lookSeed";

function newSeed() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function lookSeed() {
  let seed = null;
  try { seed = localStorage.getItem(LOOK_KEY); } catch (err) { /* storage off: a seed per page */ }
  if (!seed) {
    seed = newSeed();
    try { localStorage.setItem(LOOK_KEY, seed); } catch (err) { /* ignore */ }
  }
  return seed;
}

function newLook() {
  const seed = newSeed();
  try { localStorage.setItem(LOOK_KEY, seed); } catch (err) { /* ignore */ }
  sendControl({ type: "configure", seed });
}

function init() {
  $("join").addEventListener("click", join);
  $("leave").addEventListener("click", () => hangUp("You left the call."));
  $("privacy").addEventListener("change", () => {
    $("room-label").hidden = $("privacy").value !== "room";
    if (state.pc) { // a new identity basis needs a new pipeline: rejoin
      hangUp("Privacy mode changed — rejoining…");
      join();
    }
  });
  $("size").addEventListener("change", () => {
    sendControl({ type: "configure", size: parseInt($("size").value, 10) });
    setDownloads(!!state.callId);
  });
  $("skin-tone").addEventListener("change", () => sendControl({ type: "configure", skin_tone: $("skin-tone").value }));
  $("new-look").addEventListener("click", newLook);
  window.addEventListener("pagehide", () => hangUp());
  if (!window.RTCPeerConnection || !navigator.mediaDevices) {
    setMessage("This browser does not support WebRTC calls.", true);
    $("join").disabled = true;
  }
  loadOptions();
}

init();
