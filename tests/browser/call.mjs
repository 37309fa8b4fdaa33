// Joins a call through the real page in Debian's Firefox (firefox-esr) over WebDriver BiDi and
// prints what a person would see, as one JSON line, for tests/test_browser.py to judge.
//
//   node tests/browser/call.mjs --url http://127.0.0.1:PORT --wav speech.wav --shot out.png [--firefox /usr/bin/firefox-esr]
//
// Firefox's fake microphone is a tone, so the page's getUserMedia is pointed at a WebAudio
// stream playing the WAV in a loop (the page itself is unchanged: app.js still asks for the
// microphone with its usual constraints). Firefox starts an AudioContext only with an audio
// output, so the test runs a PulseAudio null sink for it; without one the fake tone is kept and
// "speech" in the output says so. Nothing is downloaded: puppeteer-core drives the system binary.
import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const url = arg("url");
const wavPath = arg("wav");
const wav = wavPath ? readFileSync(wavPath).toString("base64") : null;
const shot = arg("shot");
const firefox = arg("firefox", "/usr/bin/firefox-esr");
const profile = mkdtempSync(join(tmpdir(), "s2f-firefox-"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: firefox,
  headless: true,
  userDataDir: profile,
  timeout: 120000, // a first start on a busy machine takes tens of seconds
  protocolTimeout: 120000,
  extraPrefsFirefox: {
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
    "media.peerconnection.ice.loopback": true, // the server on 127.0.0.1 keeps only loopback candidates
    "media.peerconnection.ice.obfuscate_host_addresses": false, // no mDNS names
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "network.proxy.type": 0,
    "browser.shell.checkDefaultBrowser": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "toolkit.telemetry.enabled": false,
    "app.update.enabled": false,
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
    "app.normandy.enabled": false,
    "extensions.update.enabled": false,
    "browser.safebrowsing.malware.enabled": false,
    "browser.safebrowsing.phishing.enabled": false,
  },
});
const out = { console: [], errors: [] };
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 720 });
  page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => out.errors.push(String(e)));
  await page.goto(`${url}/?frame_events=1`, { waitUntil: "load" });
  out.userAgent = await page.evaluate(() => navigator.userAgent);
  out.hadMic = await page.evaluate(() => !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia));
  // speech instead of the fake tone: decode the WAV, loop it into a MediaStream
  out.speech = "fake-tone";
  if (wav) {
    out.speech = await page.evaluate(async (b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const ctx = new AudioContext({ sampleRate: 48000 });
      const buffer = await ctx.decodeAudioData(bytes.buffer);
      const dest = ctx.createMediaStreamDestination();
      const src = ctx.createBufferSource();
      src.buffer = buffer;
      src.loop = true;
      src.connect(dest);
      src.start();
      // with no audio output device Firefox never starts an AudioContext: keep the fake mic then
      await Promise.race([ctx.resume(), new Promise((r) => setTimeout(r, 3000))]);
      if (ctx.state !== "running") return `fake-tone (AudioContext ${ctx.state})`;
      const asked = [];
      window.s2fMicAsks = asked;
      navigator.mediaDevices.getUserMedia = async (constraints) => {
        asked.push(constraints);
        return dest.stream;
      };
      return "webaudio";
    }, wav);
  }
  if (!out.speech.startsWith("webaudio")) {
    await page.evaluate(() => {
      const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      const asked = [];
      window.s2fMicAsks = asked;
      navigator.mediaDevices.getUserMedia = (constraints) => {
        asked.push(constraints);
        return real(constraints);
      };
    });
  }
  const video = "document.getElementById('avatar')";
  await page.click("#join");
  await page.waitForFunction(`${video}.videoWidth > 0`, { timeout: 20000 });
  out.videoWidth = await page.evaluate(`${video}.videoWidth`);
  // headless Firefox paints no frames (totalVideoFrames stays 0): count what the receiver decoded
  const frames = () =>
    page.evaluate(async () => {
      let n = 0;
      (await window.s2f.pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") n += r.framesDecoded || 0;
      });
      return n;
    });
  out.frames0 = await frames();
  out.time0 = await page.evaluate(`${video}.currentTime`);
  out.heard0 = parseFloat(await page.$eval("#heard", (e) => e.textContent));
  await sleep(4000);
  out.frames1 = await frames();
  out.time1 = await page.evaluate(`${video}.currentTime`);
  await page.waitForFunction("parseFloat(document.getElementById('heard').textContent) >= 2.0", { timeout: 30000 });
  out.heard1 = parseFloat(await page.$eval("#heard", (e) => e.textContent));
  out.framesSeen = await page.evaluate("window.s2f.framesSeen");
  out.version = parseInt(await page.$eval("#version", (e) => e.textContent), 10);
  out.gender = await page.$eval("#gender", (e) => e.textContent);
  out.download = await page.$eval("#dl-png", (e) => e.getAttribute("href"));
  out.micConstraints = await page.evaluate("window.s2fMicAsks");
  out.callId = await page.evaluate("window.s2f.callId");
  if (shot) await page.screenshot({ path: shot });
  await page.click("#leave");
  await page.waitForFunction("document.getElementById('join').disabled === false", { timeout: 10000 });
  out.message = await page.$eval("#message", (e) => e.textContent);
} catch (err) {
  out.failure = String(err && err.stack ? err.stack : err);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
