// The assistant demo: text → POST /v1/tts (offline Piper voice) → PCM to /v1/assistant →
// frames back, paced by the server's avatar (it is the clock). The page plays the same
// audio, starting it when the first frame that shows the sentence arrives; after that the
// audio clock leads: each speaking frame waits until the sound it shows is heard (so an
// audio glitch or a burst of frames never pulls them apart). Every frame shown is logged
// with where the audio was at that moment.
// window.s2fAssistant exposes what the page measures (the browser test reads it).
"use strict";

const $ = (id) => document.getElementById(id);
const SIZE = 256;
const FPS = 25;
const CHUNK_S = 0.5; // PCM per websocket message

const demo = {
  ready: false, rate: 0, frames: 0, drawn: 0, mouth: 0, audioPos: null,
  playing: false, finished: [], errors: [], stoppedAt: null,
  log: [], // one per frame: [performance.now() ms, sentence position it shows (s) | null, mouth, audio heard (s) | null]
  level: () => 0,
};
window.s2fAssistant = demo;

let ws = null;
let audioCtx = null;
let analyser = null;
let source = null; // the sentence's audio, created when its PCM is sent
let sourceStartedAt = null; // audioCtx time it started
let base = null; // frame t of the sentence's first sample
let waitingStart = false; // PCM sent, audio waits for the first frame that shows it
let pendingBlob = null; // a frame's picture; its {"type": "frame"} event follows it
const queue = []; // speaking frames waiting for the audio clock: {seq, t, mouth, bmp}
let seq = 0;
let drawnSeq = 0;
let fpsWindow = [];
let offsets = [];
const canvas = $("avatar").getContext("2d");

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

function setState(text) {
  $("state").textContent = text;
  $("avatar-frame").classList.toggle("speaking", text === "speaking");
}

function ensureAudio() {
  if (audioCtx) return audioCtx;
  audioCtx = new AudioContext();
  analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  analyser.connect(audioCtx.destination);
  const buf = new Float32Array(analyser.fftSize);
  demo.level = () => {
    analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (const x of buf) s += x * x;
    return Math.sqrt(s / buf.length);
  };
  return audioCtx;
}

function connect() {
  if (ws) { ws.onclose = null; ws.close(); }
  demo.ready = false;
  $("speak").disabled = true;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/assistant`;
  ws = new WebSocket(url);
  ws.binaryType = "blob";
  ws.onopen = () => {
    const start = { type: "start", sample_rate: demo.rate, size: SIZE, fps: FPS, format: "jpeg", frame_events: true };
    const seed = $("seed").value.trim();
    if (seed) start.seed = seed;
    ws.send(JSON.stringify(start));
    demo.ready = true;
    $("speak").disabled = !demo.voice;
  };
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onEvent(JSON.parse(ev.data)) : (pendingBlob = ev.data));
  ws.onclose = (ev) => {
    demo.ready = false;
    $("speak").disabled = true;
    endSentence("idle");
    if (ev.code !== 1000) say(`avatar connection closed (${ev.code}${ev.reason ? ": " + ev.reason : ""}); reconnecting…`, true);
    setTimeout(connect, 2000);
  };
}

// Seconds of the sentence the listener has heard (null when none is playing).
function heardSeconds() {
  if (sourceStartedAt === null) return null;
  return audioCtx.currentTime - sourceStartedAt - (audioCtx.outputLatency || 0);
}

function show(item) {
  const heard = heardSeconds();
  if (item.bmp) {
    item.bmp.then((bmp) => {
      if (item.seq > drawnSeq) { // decodes may finish out of order: never draw an older frame
        drawnSeq = item.seq;
        canvas.drawImage(bmp, 0, 0, SIZE, SIZE);
      }
      bmp.close();
      demo.drawn++;
      $("avatar-frame").classList.add("live");
    });
  }
  if (item.t !== null && heard !== null) offsets.push(heard - item.t);
  demo.log.push([performance.now(), item.t, item.mouth, item.t === null ? null : heard]);
  if (demo.log.length > 3000) demo.log.splice(0, 1000);
  demo.mouth = item.mouth;
  showStats();
}

function drop(item) {
  if (item.bmp) item.bmp.then((bmp) => bmp.close());
}

// The audio clock is the master: a speaking frame is shown when the sound it shows is heard.
function tick() {
  const heard = heardSeconds();
  let pick = null;
  while (queue.length && (queue[0].t === null || heard === null || queue[0].t <= heard + 0.5 / FPS)) {
    if (pick) drop(pick);
    pick = queue.shift();
  }
  if (pick) show(pick);
  requestAnimationFrame(tick);
}

function onEvent(msg) {
  if (msg.type === "frame") {
    demo.frames++;
    demo.audioPos = msg.t;
    if (msg.t !== null && waitingStart && source) {
      waitingStart = false; // this frame shows the sentence's first sound: play it now
      base = msg.t;
      sourceStartedAt = audioCtx.currentTime;
      source.start();
      demo.playing = true;
      setState("speaking");
    }
    const t = msg.t === null || base === null ? null : msg.t - base;
    const item = { seq: ++seq, t, mouth: msg.mouth, bmp: pendingBlob ? createImageBitmap(pendingBlob) : null };
    pendingBlob = null;
    if (t === null && !queue.length) show(item);
    else queue.push(item);
  } else if (msg.type === "playback_finished") {
    demo.finished.push({ position: msg.position, interrupted: msg.interrupted, at: performance.now() });
    $("finished").textContent = `${msg.position.toFixed(2)} s${msg.interrupted ? " (stopped)" : ""}`;
  } else if (msg.type === "error") {
    demo.errors.push(msg);
    say(msg.error, true);
  }
}

function showStats() {
  const now = performance.now();
  fpsWindow.push(now);
  while (fpsWindow.length && fpsWindow[0] < now - 1000) fpsWindow.shift();
  $("fps").textContent = fpsWindow.length;
  $("frames").textContent = `(${demo.frames} received)`;
  $("mouth").value = demo.mouth;
  if (offsets.length) {
    const s = [...offsets].sort((a, b) => a - b);
    $("offset").textContent = `${Math.round(1000 * s[s.length >> 1])} ms`;
  }
}

function endSentence(state) {
  if (source) {
    source.onended = null;
    try { source.stop(); } catch (e) { /* never started */ }
    source.disconnect();
  }
  source = null;
  waitingStart = false;
  sourceStartedAt = null;
  base = null;
  queue.splice(0).forEach(drop);
  demo.playing = false;
  $("stop").disabled = true;
  setState(state);
}

function parseWav(buf) {
  const v = new DataView(buf);
  const tag = (o) => String.fromCharCode(v.getUint8(o), v.getUint8(o + 1), v.getUint8(o + 2), v.getUint8(o + 3));
  if (tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("not a WAV");
  let rate = 0;
  for (let o = 12; o + 8 <= buf.byteLength;) {
    const size = v.getUint32(o + 4, true);
    if (tag(o) === "fmt ") rate = v.getUint32(o + 12, true);
    if (tag(o) === "data") return { rate, bytes: new Uint8Array(buf, o + 8, Math.min(size, buf.byteLength - o - 8)) };
    o += 8 + size + (size & 1);
  }
  throw new Error("WAV has no data");
}

async function speak() {
  const text = $("text").value.trim();
  if (!text || !demo.ready) return;
  ensureAudio();
  await audioCtx.resume();
  if (source) stop();
  setState("synthesising…");
  say("");
  $("speak").disabled = true;
  try {
    const r = await fetch("/v1/tts", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }) });
    if (!r.ok) {
      const body = await r.json().catch(() => ({ error: r.statusText }));
      throw new Error(body.error || `TTS failed (${r.status})`);
    }
    const wav = parseWav(await r.arrayBuffer());
    if (wav.rate !== demo.rate) throw new Error(`voice rate ${wav.rate} Hz, avatar session ${demo.rate} Hz`);
    const pcm = new Int16Array(wav.bytes.slice().buffer);
    const audio = audioCtx.createBuffer(1, pcm.length, wav.rate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    source = audioCtx.createBufferSource();
    source.buffer = audio;
    source.connect(analyser);
    source.onended = () => endSentence("idle"); // played to its end (Stop detaches this first)
    waitingStart = true;
    offsets = [];
    const step = Math.round(CHUNK_S * wav.rate) * 2;
    for (let o = 0; o < wav.bytes.length; o += step) ws.send(wav.bytes.subarray(o, o + step));
    ws.send(JSON.stringify({ type: "end" }));
    $("stop").disabled = false;
  } catch (e) {
    say(e.message, true);
    endSentence("idle");
  } finally {
    $("speak").disabled = !demo.ready;
  }
}

function stop() {
  demo.stoppedAt = performance.now();
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "clear" }));
  endSentence("stopped");
}

async function init() {
  $("speak").onclick = speak;
  $("stop").onclick = stop;
  $("seed").onchange = connect;
  try {
    const status = await (await fetch("/v1/tts")).json();
    if (status.available) {
      demo.voice = status.voice;
      demo.rate = status.sample_rate;
      $("voice").textContent = `${status.voice}, ${status.sample_rate} Hz`;
    } else {
      demo.rate = 22050;
      $("voice").textContent = "none";
      say(status.error, true);
    }
  } catch (e) {
    demo.rate = 22050;
    say("could not reach the server", true);
  }
  $("placeholder").textContent = "Starting the avatar…";
  connect();
  requestAnimationFrame(tick);
}

init();
