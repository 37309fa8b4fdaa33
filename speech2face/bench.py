"""`speech2face bench`: the engine's speed and memory, each figure beside its baseline from the same run.

Timings are medians over repeated calls on one thread (the machine is shared; a median of
many short calls is what survives noise). The renderer's redraws and the VP8 encode they are
compared with are measured as CPU time of this thread (``time.thread_time``), interleaved,
so time other processes take on a shared machine is not counted against either. Budgets
from the README are printed next to each figure so a regression is visible, but
nothing here fails a build: speed is tracked by reading these numbers, not by timed tests.

``--json`` prints one JSON object with every figure (the keys are listed in the README,
"Benchmarks: engine"); the table then goes to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import gc
import json
import resource
import shutil
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np


def _median_ms(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _cpu_ms(fn: Callable[[], object]) -> float:
    return _timed(fn)[0]


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(CPU ms of this thread, result) of one call."""
    t = time.thread_time()
    out = fn()
    return (time.thread_time() - t) * 1000, out


def _speech(seconds: float = 12.0) -> tuple[np.ndarray, str]:
    """Real synthetic speech when espeak-ng is installed, else a formant-filtered pulse train."""
    from engines.audio import decode_audio

    if shutil.which("espeak-ng"):
        text = (
            "The quick brown fox jumps over the lazy dog while the morning sun rises slowly "
            "over the quiet hills, and a gentle breeze carries the sound of distant bells."
        )
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "bench.wav"
            subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(wav), text], check=True, capture_output=True)
            pcm = decode_audio(wav).pcm
        while len(pcm) < seconds * 16000:
            pcm = np.concatenate([pcm, pcm])
        return pcm, "espeak-ng en-us+m3"
    sr, n = 16000, int(seconds * 16000)
    t = np.arange(n) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = np.cumsum(f0 / sr)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float32)
    from scipy.signal import lfilter

    y = pulses
    for f, bw in ((700, 130), (1220, 70), (2600, 160)):
        r = np.exp(-np.pi * bw / sr)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r], y)
    env = (np.sin(2 * np.pi * 2.0 * t) > -0.3).astype(np.float32)
    return (0.3 * y / np.abs(y).max() * env).astype(np.float32), "formant-filtered pulse train (espeak-ng not installed)"


def run_bench(quick: bool = False, json_out: str | None = None) -> int:
    """Run every benchmark; ``json_out`` "-" prints the JSON object to stdout, a path writes it there."""
    import sys

    import torch

    torch.set_num_threads(1)
    from engines.backends import make_backend
    from engines.mel import mel_spectrogram
    from engines.pipeline import BLOCK_SAMPLES, AvatarEngine
    from engines.profile import VoiceProfile

    out = sys.stderr if json_out == "-" else sys.stdout
    reps = 20 if quick else 100
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pcm, source = _speech()
    print(f"speech2face bench — one CPU thread, medians of {reps} runs; audio: {source}", file=out)
    results: dict[str, float | str] = {"audio": source, "repetitions": reps}

    def row(key: str, label: str, value: float, unit: str, note: str = "") -> None:
        results[key] = round(float(value), 4)
        print(f"  {label:<52} {value:9.2f} {unit:<4} {note}", file=out)

    def section(title: str) -> None:
        print(title, file=out)

    torch_b, ort_b = make_backend("torch"), make_backend("onnx")
    mels = np.stack([mel_spectrogram(pcm[i : i + 25600])[:160] for i in range(0, 16 * 8000, 8000)])
    section("encoder (GE2E, one 1.6 s partial):")
    for batch in (1, 16):
        x = mels[:batch]
        t_ms = _median_ms(lambda x=x: torch_b.embed(x), max(5, reps // (4 if batch > 1 else 1))) / batch
        o_ms = _median_ms(lambda x=x: ort_b.embed(x), max(5, reps // (4 if batch > 1 else 1))) / batch
        row(f"encoder_torch_b{batch}_ms", f"torch, batch {batch} (ms per partial)", t_ms, "ms", "baseline")
        row(
            f"encoder_onnx_b{batch}_ms",
            f"onnx runtime, batch {batch} (ms per partial)",
            o_ms,
            "ms",
            f"{t_ms / o_ms:.2f}x torch's speed",
        )
        if batch == 1:
            o_ms_b1 = o_ms

    section("refinement step (every 0.5 s of new speech):")
    block = pcm[:BLOCK_SAMPLES]
    row(
        "profile_block_ms",
        "voice profile, Praat on a 0.5 s block",
        _median_ms(lambda: VoiceProfile().add_block(block), reps),
        "ms",
    )
    row("mel_partial_ms", "mel of one partial (numpy)", _median_ms(lambda: mel_spectrogram(pcm[:25600]), reps), "ms")
    engine = AvatarEngine("onnx")
    pipe = engine.pipeline()
    pipe.push(pcm[: 3 * 16000])
    row("decoder_onnx_ms", "face decoder (onnx runtime)", _median_ms(lambda: pipe._refine(), reps), "ms")
    torch_pipe = AvatarEngine("torch").pipeline()
    torch_pipe.push(pcm[: 3 * 16000])
    row("decoder_torch_ms", "face decoder (torch)", _median_ms(lambda: torch_pipe._refine(), reps), "ms", "baseline")

    # the refinement step: VAD over 0.5 s of audio + Praat on the new block + decoder run;
    # the encoder (one partial per 0.8 s of speech) is timed above, as the issue lists it apart
    from engines.vad import StreamingVad

    vad = StreamingVad()
    profile = VoiceProfile()
    feats_pipe = engine.pipeline()
    feats_pipe.push(pcm[: 3 * 16000])
    steps, offset = [], 0
    for _ in range(reps):
        chunk = pcm[offset : offset + BLOCK_SAMPLES]
        offset = (offset + BLOCK_SAMPLES) % (len(pcm) - BLOCK_SAMPLES)
        t = time.perf_counter()
        vad.push(chunk)
        profile.add_block(chunk)
        feats_pipe._refine()
        steps.append((time.perf_counter() - t) * 1000)
    row(
        "refinement_step_p50_ms",
        "refinement step: VAD + profile + decoder (p50)",
        float(np.median(steps)),
        "ms",
        "budget 10 ms p50 (README)",
    )
    row("encoder_share_per_block_ms", "  + encoder share per 0.5 s block (0.625 partial)", 0.625 * o_ms_b1, "ms", "amortised")

    _bench_renderer(engine, pcm, reps, row, section)

    section("one-shot latency, 6 s clip:")
    clip = pcm[: 6 * 16000]
    torch_engine = AvatarEngine("torch")
    t_ms = _median_ms(lambda: torch_engine.analyze(clip), max(3, reps // 20), warmup=1)
    o_ms = _median_ms(lambda: engine.analyze(clip), max(3, reps // 20), warmup=1)
    row("oneshot_torch_ms", "torch backend", t_ms, "ms", "baseline")
    row("oneshot_onnx_ms", "onnx runtime backend", o_ms, "ms", f"{t_ms / o_ms:.2f}x; {6000 / o_ms:.0f}x real time")

    section("memory:")
    gc.collect()
    import tracemalloc

    tracemalloc.start()
    sessions = [engine.pipeline() for _ in range(10)]
    for s in sessions:
        s.push(clip)
    per_session = tracemalloc.get_traced_memory()[1] / 10 / 1024
    tracemalloc.stop()
    del sessions
    row("session_heap_kib", "python heap per live session after 6 s (peak)", per_session, "KiB")
    row("rss_start_mib", "process peak RSS at start (imports)", rss_start, "MiB", "baseline")
    row("rss_end_mib", "process peak RSS after the whole bench", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")
    doc = json.dumps(results, indent=2)
    if json_out == "-":
        print(doc)
    elif json_out:
        Path(json_out).write_text(doc)
        print(f"figures written to {json_out}", file=out)
    return 0


def _vp8_frames(layers, n: int) -> list:
    """``n`` talking frames of one face (mouth shapes and blinks changing), as yuv420p frames."""
    import fractions

    import av

    from engines.mouth import MouthState
    from engines.viseme import VISEMES

    frames = []
    for i in range(n):
        mouth = MouthState((i % 5) / 4, VISEMES[(i // 3) % len(VISEMES)])
        rgb = layers.compose(mouth, 1.0 if i % 17 == 16 else 0.0)
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        f.pts = i * 6000
        f.time_base = fractions.Fraction(1, 90_000)
        frames.append(f)
    return frames


def _bench_renderer(engine, pcm: np.ndarray, reps: int, row, section) -> None:
    """Redraw costs against the VP8 encode of one frame of the same size, measured interleaved."""
    from engines.animator import FaceAnimator, same_look
    from engines.face import PARAM_NAMES, FaceParams
    from engines.pipeline import BLOCK_SAMPLES
    from engines.render import QUANTA, AvatarRenderer, FaceLayers, quantize
    from engines.viseme import VisemeEstimator
    from server.call import face_interval
    from server.config import ServerConfig
    from server.vp8 import AvatarVp8Encoder

    section("renderer (256 px; CPU time of this thread, redraws and VP8 encodes interleaved):")
    params = engine.analyze(pcm[: 6 * 16000]).params
    layers = FaceLayers.build(params, 256)
    # the baseline: libvpx with the server's settings (server/vp8.py) on talking frames
    enc = AvatarVp8Encoder()
    frames = _vp8_frames(layers, 90)
    for f in frames[:10]:  # the keyframe and rate control settle first
        enc.encode(f)
    vp8: list[float] = []
    pending = iter(frames[10:] * 50)

    def encode_one() -> None:
        f = next(pending)
        vp8.append(_cpu_ms(lambda: enc.encode(f)))

    # refinements that change one thing visibly (3 steps of the visibility quantum), alternating
    # so that every redraw has work: a feature's size, a small part, the head's shape
    a = quantize(params)

    def moved(name: str) -> FaceParams:
        q = 3 * QUANTA[PARAM_NAMES.index(name)]
        return a.replace(**{name: a[name] + q if a[name] < 0.8 else a[name] - q})

    n = max(10, reps // 4)
    full: list[float] = []
    single = {"mouth_width": [], "brow_thickness": [], "face_length": []}
    cur = layers
    for _ in range(n):
        full.append(_cpu_ms(lambda: FaceLayers.build(params, 256)))
        encode_one()
        for name, times in single.items():
            ms, cur = _timed(partial(FaceLayers.build, moved(name), 256, previous=cur))
            times.append(ms)
            ms, cur = _timed(partial(FaceLayers.build, a, 256, previous=cur))
            times.append(ms)
            encode_one()

    # a real session through the live path: the pipeline's refinements over the looped speech
    # go to a FaceAnimator (each redrawn from the face before) the way a call hands them over
    # (server/call.py: newest first, at most one rasterised face per ``face_interval``), while
    # it shows frames at the server's rate with the mouth driven by the same audio; mouth and
    # eyelid crops are composited when a frame first shows them, and that CPU is counted with
    # the redraws. A refinement superseded before it was drawn costs nothing itself: the one
    # drawn carries the cost.
    fps = ServerConfig().fps
    session_pcm = np.concatenate([pcm, pcm, pcm])[: 36 * 16000]
    built: list = []
    drew: list[bool] = []

    def factory(p: FaceParams, size: int, previous=None):
        out = FaceLayers.build(p, size, previous=previous)
        built.append(out)
        drew.append(previous is None or not same_look(out, previous))
        return out

    factory.accepts_previous = True  # type: ignore[attr-defined]
    now = [0.0]
    anim = FaceAnimator(256, sway=False, layer_factory=factory, clock=lambda: now[0])
    sess = engine.pipeline()
    packet = 320  # 20 ms
    redraws: list[float] = []  # CPU per refinement
    redrawn: list[bool] = []  # ... whether it was drawn (a visible change)
    wanted: tuple | None = None  # (refinement index, params, earliest time to draw it)
    last_raster = -1e9
    superseded = 0  # refinements a newer one replaced before they were drawn
    next_frame = 0.0

    def hand_over(k: int, p: FaceParams) -> None:
        n_built = len(built)
        ms, _ = _timed(partial(anim.set_face, p, k + 1))
        redraws[k] += ms
        redrawn[k] = redrawn[k] or (len(built) > n_built and drew[-1])
        encode_one()

    for i in range(0, len(session_pcm) - packet + 1, packet):
        now[0] = i / 16000
        anim.push_audio(session_pcm[i : i + packet], 16000, arrival=now[0])
        while next_frame <= now[0]:
            anim.frame(next_frame)
            next_frame += 1 / fps
        if (i + packet) % BLOCK_SAMPLES == 0:
            u = sess.push(session_pcm[i + packet - BLOCK_SAMPLES : i + packet])
            if u is not None:
                redraws.append(0.0)
                redrawn.append(False)
                k = len(redraws) - 1
                superseded += wanted is not None
                if not anim.differs(u.params):
                    wanted = None
                    hand_over(k, u.params)  # cheap: only the version moves
                else:
                    wanted = (k, u.params, last_raster + face_interval(u.seconds_heard))
        if wanted is not None and now[0] >= wanted[2]:
            hand_over(wanted[0], wanted[1])
            wanted, last_raster = None, now[0]
    anims = {id(x): x for lay in built for x in (lay.mouth, lay.eyes) if x is not None}.values()
    lazy_ms = 1000 * sum(x.cpu_s - (x.cpu_at_build or 0.0) for x in anims)
    lazy_n = sum(x.composited for x in anims) - sum(1 for x in anims if x.cpu_at_build is not None)
    # mouth shapes and eyelid levels are rasterised once per shape and size, when first shown
    sets = {id(v): v for lay in built for v in (lay.parts["mouth"].variants, lay.parts["eyes"].variants)}.values()
    lazy_ms += 1000 * sum(v.cpu_s - (v.cpu_at_build or 0.0) for v in sets)
    vp8_ms = float(np.median(vp8))
    budget = 3 * vp8_ms

    def ratio(ms: float, target: bool = False) -> str:
        note = f"{ms / vp8_ms:.1f}x a VP8 encode"
        return note + (f" (target 3x: {'met' if ms <= budget else 'not met'})" if target else "")

    row("vp8_encode_frame_ms", "VP8 encode of one 256 px frame (libvpx, server/vp8.py)", vp8_ms, "ms", "baseline")
    row(
        "redraw_full_ms",
        "full redraw: every part from nothing (first face)",
        float(np.median(full)),
        "ms",
        ratio(np.median(full)),
    )
    for key, name, label in (
        ("redraw_one_param_ms", "mouth_width", "a feature's size (mouth width)"),
        ("redraw_small_part_ms", "brow_thickness", "a small part (brow thickness)"),
        ("redraw_head_shape_ms", "face_length", "the head's shape (face length)"),
    ):
        ms = float(np.median(single[name]))
        row(key, f"refinement redraw, one visible change: {label}", ms, "ms", ratio(ms, True))
    n_drawn = int(sum(redrawn))
    mean = (float(np.sum(redraws)) + lazy_ms) / len(redraws)
    visible = (float(np.sum(np.array(redraws)[redrawn])) + lazy_ms) / max(1, n_drawn)
    row("refinements_in_session", f"refinements in a {len(session_pcm) / 16000:.0f} s session ({fps:g} fps)", len(redraws), "")
    row("refinements_superseded", "  of which a newer one replaced before it was drawn", superseded, "")
    row("refinements_redrawn", "  of which drew something (a visible change)", n_drawn, "")
    row("crops_composited_later", "  mouth/eyelid crops composited when first shown", lazy_n, "")
    row("crops_composited_later_ms", "  ... their CPU, all together", lazy_ms, "ms")
    row("redraw_session_mean_ms", "refinement redraw, mean over the session (with those crops)", mean, "ms", ratio(mean, True))
    row(
        "redraw_visible_mean_ms",
        "refinement redraw, mean over those that drew (with the crops)",
        visible,
        "ms",
        ratio(visible, True),
    )
    row("redraw_session_p50_ms", "refinement redraw, median over the session", float(np.median(redraws)), "ms")
    row("redraw_session_p90_ms", "refinement redraw, p90 over the session", float(np.percentile(redraws, 90)), "ms")
    row("redraw_target_ms", "target: 3 VP8 encodes", budget, "ms")

    r = AvatarRenderer(256)
    r.set_params(params)
    row(
        "frame_from_cache_ms",
        "frame from cache (mouth + viseme + blink)",
        _median_ms(lambda: r.frame(0.6, 0.0, viseme={"A": 0.7, "O": 0.3}), reps * 4),
        "ms",
        "budget 2 ms",
    )
    r.set_params(params.replace(background_hue=(params.background_hue + 0.3) % 1.0))
    row("frame_morphing_ms", "frame from cache while morphing", _median_ms(lambda: r.frame(0.6, 0.3, morph=0.5), reps * 4), "ms")
    est = VisemeEstimator()
    packet = pcm[16000 : 16000 + 320]
    est.push(pcm[:16000], analyse=False)
    row(
        "viseme_buffer_packet_ms",
        "viseme estimator: buffer one 20 ms packet",
        _median_ms(lambda: est.push(packet, analyse=False), reps * 4),
        "ms",
    )

    def analyse() -> None:
        est.push(packet, analyse=False)
        est.update()

    row("viseme_analyse_frame_ms", "viseme estimator: analyse the last 40 ms (per frame)", _median_ms(analyse, reps * 4), "ms")

    # the live path: the animator's frames, in the format the VP8 encoder takes
    anim = FaceAnimator(256, params, sway=False)
    clock = iter(range(10**9))
    anim.frame(0.0, "yuv420p")
    hit_ms = _median_ms(lambda: anim.frame(next(clock) * 1e-3, "yuv420p"), reps * 4)

    def miss() -> None:
        anim.close()  # empties the frame cache: the next frame is composed and converted
        anim.frame(next(clock) * 1e-3, "yuv420p")

    miss_ms = _median_ms(miss, reps * 4)
    row("animator_frame_cached_ms", "animator frame, cached (yuv420p)", hit_ms, "ms", "budget 2 ms")
    row("animator_frame_miss_ms", "animator frame, cache miss (compose + yuv420p)", miss_ms, "ms")
