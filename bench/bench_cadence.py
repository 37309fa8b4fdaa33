"""The model cadence against the old every-block cadence, on long voices, in one run.

For each voice (≈ 100–120 s of espeak-ng / MBROLA speech of one long English text), both
cadences stream the same audio in 0.2 s pushes through ``AvatarEngine.push_many`` (as the
server feeds it). Printed per cadence:

- the face distance (face-vector L2; different speakers are ~1.6 apart) from the face shown at
  6, 20 and 30 s of speech (the newest refinement by then) to that cadence's final face — how
  much the face still moves — and the new final's distance from the old final;
- model work: refinements, Praat blocks and encoder partials, in total and in 6–38 s of speech
  (the window bench_server.py measures), and the model CPU per second of speech (thread CPU
  of the pushes: VAD, Praat, mels, encoder, decoder) in 0–6 s, 6–38 s and after.

    python bench/bench_cadence.py               # all voices that are installed
    python bench/bench_cadence.py --voices en-us+m3 mb-us1 --json cadence.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

VOICES = ("en-us+m3", "en+f3", "en+m1", "en-us+f2", "mb-us1", "mb-us2")
CHECKPOINTS = (6.0, 20.0, 30.0)
WINDOW = (6.0, 38.0)  # seconds of speech: bench_server's warm-up (8 s) plus its 30 s window, roughly
PUSH = 3200  # 0.2 s, the server's push size

TEXT = (
    "Every spring the small town holds a market in the central square. Farmers bring fresh vegetables, bakers sell "
    "warm bread, and musicians play quietly near the fountain until the stalls are packed away. The weather today is "
    "mild and mostly dry, and the library on the main street opens at nine in the morning and closes at six in the "
    "evening. Please remember to bring a pencil, a notebook, and a bottle of water, because the workshop will last for "
    "most of the afternoon. Trains to the city leave every twenty minutes from platform two, and the journey usually "
    "takes a little under half an hour. My grandmother kept a garden behind her house for nearly fifty years. She grew "
    "tomatoes, beans and tall yellow sunflowers, and every evening she walked along the rows with a watering can, "
    "talking softly to the plants as if they were old friends. When I was a child I thought this was strange, but now "
    "I understand that the garden was where she thought about her day. The museum on the hill has a new exhibition "
    "about the history of flight. You can see a copy of the first glider, a collection of old maps that pilots once "
    "carried, and a small theatre that shows films of early airships drifting over the sea. Tickets are cheaper on "
    "Tuesdays, and students can enter for free if they show a card at the desk. Last winter the lake froze so thickly "
    "that people walked across it to the island. Some of them brought skates, others pulled sledges loaded with wood "
    "for a fire, and in the afternoon the whole shore smelled of smoke and hot chocolate. Nobody could remember the "
    "last time the ice had been that strong. If you want to learn a new language, start with the words you use every "
    "day. Name the things in your kitchen, count the steps on your stairs, and describe the weather each morning. "
    "Small habits like these build a vocabulary faster than long lessons, and they make the new words feel like your "
    "own. The bridge across the river was built more than two hundred years ago from grey stone carried on barges "
    "from a quarry in the north. It has survived floods, storms and the weight of countless carts, and today it is "
    "closed to cars so that people can stroll across it slowly and watch the boats pass underneath."
)


def long_speech(voice: str) -> np.ndarray | None:
    """16 kHz float32 of the long text in this voice (cached in the temp dir), or None if not installed."""
    from engines.audio import decode_audio

    if not shutil.which("espeak-ng"):
        return None
    key = hashlib.sha256(f"{voice}\0{TEXT}".encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"s2f_cadence_{key}.wav"
    if not path.exists():
        tmp = path.with_suffix(".tmp.wav")
        run = subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(tmp), TEXT], capture_output=True)
        if run.returncode != 0 or not tmp.exists() or tmp.stat().st_size < 100_000:
            return None
        os.replace(tmp, path)
    return decode_audio(path).pcm


def stream(engine, pcm: np.ndarray, rule) -> dict:
    """Push the clip in 0.2 s pieces; record every refinement and the CPU per phase of speech."""
    pipe = engine.pipeline(cadence=rule)
    updates = []
    cpu = {"young": 0.0, "window": 0.0, "late": 0.0}
    counts = {"refinements": 0, "praat_blocks": 0, "partials": 0}
    in_window = {"refinements": 0, "praat_blocks": 0, "partials": 0}
    for i in range(0, len(pcm), PUSH):
        before = (pipe.seconds_heard, pipe._analysed, pipe._n_partials + len(pipe._pending_mels))
        t = time.thread_time()
        update = engine.push_many([(pipe, pcm[i : i + PUSH])])[0]
        dt = time.thread_time() - t
        if isinstance(update, Exception):
            raise update
        at = before[0]
        cpu["young" if at < WINDOW[0] else "window" if at < WINDOW[1] else "late"] += dt
        if update is not None:
            updates.append((update.seconds_heard, update.params.vector.copy()))
        after = (pipe._analysed, pipe._n_partials + len(pipe._pending_mels))
        n_ref = 0 if update is None else 1
        for counter, inc in ((counts, True), (in_window, WINDOW[0] <= at < WINDOW[1])):
            if inc:
                counter["praat_blocks"] += (after[0] - before[1]) // 8000
                counter["partials"] += after[1] - before[2]
                counter["refinements"] += n_ref
    final = pipe.finish()
    heard = final.seconds_heard
    spans = {"young": WINDOW[0], "window": min(heard, WINDOW[1]) - WINDOW[0], "late": max(0.0, heard - WINDOW[1])}
    return {
        "updates": updates,
        "final": final.params.vector.copy(),
        "heard": heard,
        "counts": counts,
        "in_window": in_window,
        "cpu_ms_per_speech_s": {k: round(1000 * cpu[k] / spans[k], 2) if spans[k] > 0 else None for k in cpu},
    }


def shown(updates: list, seconds: float) -> np.ndarray:
    face = None
    for at, vec in updates:
        if at <= seconds + 1e-9:
            face = vec
    return face


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voices", nargs="*", default=list(VOICES), help="espeak-ng voice names (mb-* are MBROLA)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from engines.cadence import ADAPTIVE, EVERY_BLOCK
    from engines.pipeline import AvatarEngine

    engine = AvatarEngine("onnx")
    results = {}
    for voice in args.voices:
        pcm = long_speech(voice)
        if pcm is None:
            print(f"{voice}: not installed, skipped")
            continue
        old, new = stream(engine, pcm, EVERY_BLOCK), stream(engine, pcm, ADAPTIVE)
        row = {"speech_s": round(new["heard"], 1)}
        for name, r in (("old", old), ("new", new)):
            row[name] = {
                "distance_to_final": {
                    f"{c:g}": round(float(np.linalg.norm(shown(r["updates"], c) - r["final"])), 3) for c in CHECKPOINTS
                },
                "counts": r["counts"],
                "in_window": r["in_window"],
                "cpu_ms_per_speech_s": r["cpu_ms_per_speech_s"],
            }
        row["new_final_vs_old_final"] = round(float(np.linalg.norm(new["final"] - old["final"])), 3)
        results[voice] = row
        d_old, d_new = row["old"]["distance_to_final"], row["new"]["distance_to_final"]
        print(f"{voice} ({row['speech_s']} s of speech): distance to final at 6/20/30 s")
        print(
            f"  old {d_old['6']:.3f}/{d_old['20']:.3f}/{d_old['30']:.3f}"
            f"   new {d_new['6']:.3f}/{d_new['20']:.3f}/{d_new['30']:.3f}"
            f"   new final vs old final {row['new_final_vs_old_final']:.3f}"
        )
        for name in ("old", "new"):
            w, c, cpu = row[name]["in_window"], row[name]["counts"], row[name]["cpu_ms_per_speech_s"]
            print(
                f"  {name}: 6–38 s: {w['refinements']} refinements, {w['praat_blocks']} Praat blocks, {w['partials']} partials"
                f" (whole clip {c['refinements']}/{c['praat_blocks']}/{c['partials']}); model CPU ms per s of speech"
                f" 0–6 s {cpu['young']}, 6–38 s {cpu['window']}, later {cpu['late']}"
            )
    if results:
        worse = np.array(
            [
                [r["new"]["distance_to_final"][k] - r["old"]["distance_to_final"][k] for k in ("6", "20", "30")]
                for r in results.values()
            ]
        )
        cpu = np.array([[r[n]["cpu_ms_per_speech_s"]["window"] for n in ("old", "new")] for r in results.values()])
        print(
            f"new − old distance at 6/20/30 s: mean {np.round(worse.mean(0), 3).tolist()}, "
            f"worst {np.round(worse.max(0), 3).tolist()} (limit +0.02)"
        )
        print(
            f"model CPU in 6–38 s of speech: old {cpu[:, 0].mean():.1f} ms/s, new {cpu[:, 1].mean():.1f} ms/s "
            f"({cpu[:, 0].mean() / cpu[:, 1].mean():.1f}× less)"
        )
        summary = {"mean_worse": worse.mean(0).round(3).tolist(), "worst": worse.max(0).round(3).tolist()}
        if args.json:
            args.json.write_text(
                json.dumps({"voices": results, "summary": summary, "loadavg": open("/proc/loadavg").read().split()[:3]}, indent=2)
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
