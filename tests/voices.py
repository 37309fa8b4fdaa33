"""Synthetic test-voice corpus and bad-input fixtures for Speech2Face Live.

Real recordings of people cannot be shipped with the repository, so the tests
use speech synthesised locally with espeak-ng (formant synthesis) and MBROLA
(diphone synthesis).  Every voice carries a *documented* gender label; the
labels are not trusted blindly: ``tests/test_voices.py`` measures the median
F0 of every clip and checks it lies in the label's plausible range (see
``F0_RANGE``).  Variants whose measured pitch contradicted their label were
dropped while building the list (see ``DROPPED_VARIANTS``).

Audio is cached on disk, keyed by everything that changes the waveform, so a
warm test session costs nothing.  Writes go to a temporary file followed by
``os.replace`` so that parallel workers (pytest-xdist, the CLI pool) can race
on the same clip safely.

CLI::

    python -m tests.voices --all    # generate corpus + bad inputs, with progress
    python -m tests.voices --list   # print corpus, labels and measured median F0

Only the standard library, numpy, PyAV and the ``espeak-ng``/``sox``/``mbrola``
programs are needed; nothing in here imports pytest.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import wave
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

Gender = Literal["female", "male"]
Engine = Literal["espeak", "mbrola"]

SAMPLE_RATE = 16_000
#: Bump when the synthesis/conversion pipeline changes so stale caches are ignored.
CACHE_FORMAT_VERSION = 1
#: Plausible median-F0 ranges (Hz) for each label.  The boundary at 150 Hz is
#: where the pitch sweep is expected to flip a pitch-only classifier.
F0_RANGE: dict[str, tuple[float, float]] = {"female": (150.0, 320.0), "male": (65.0, 150.0)}
#: Sentence index of the long (~12 s) text in every language.
LONG_SENTENCE_INDEX = 3
#: Below this many missing clips, generation stays quiet (a single cache miss
#: in a test is not worth a progress line).
_PROGRESS_MIN_JOBS = 4


# --------------------------------------------------------------------------- texts
# Neutral, everyday content: the service must not be steered by *what* is said.
# Indices 0-2 take ~5-8 s when synthesised, index 3 ~10-13.5 s (MBROLA French
# is the fastest speaker, MBROLA German the slowest); every clip stays within
# 3-15 s.  The same four meanings are used in every language so durations are
# comparable across voices.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The weather today is mild and mostly dry, and the library on the main street "
        "opens at nine in the morning and closes at six in the evening.",
        "Please remember to bring a pencil, a notebook, and a bottle of water, "
        "because the workshop will last for most of the afternoon.",
        "Trains to the city leave every twenty minutes from platform two, and the "
        "journey usually takes a little under half an hour.",
        "Every spring the small town holds a market in the central square. Farmers "
        "bring fresh vegetables, bakers sell warm bread, and musicians play quietly "
        "near the fountain until the stalls are packed away.",
    ),
    "fr": (
        "Le temps est doux et plutôt sec aujourd'hui, et la grande bibliothèque de la rue "
        "principale ouvre à neuf heures du matin et ferme à six heures du soir.",
        "N'oubliez pas d'apporter un crayon, un cahier et une petite bouteille d'eau, car "
        "l'atelier de cet après-midi durera presque trois heures sans aucune pause.",
        "Les trains pour le centre de la ville partent toutes les vingt minutes du quai numéro deux, "
        "et le trajet dure en général un peu moins d'une demi-heure.",
        "Chaque printemps, la petite ville organise un marché sur la place centrale. "
        "Les agriculteurs apportent des légumes frais, les boulangers vendent du pain "
        "chaud, et des musiciens jouent doucement près de la fontaine jusqu'à la fin "
        "de l'après-midi. Les visiteurs restent souvent jusqu'au soir.",
    ),
    "de": (
        "Das Wetter ist heute mild und meistens trocken, und die Bibliothek in der Hauptstraße öffnet um neun Uhr morgens.",
        "Bitte denken Sie an einen Bleistift, ein Heft und eine Flasche Wasser, denn der Kurs dauert fast den ganzen Nachmittag.",
        "Die Züge in die Stadt fahren alle zwanzig Minuten von Gleis zwei ab, und die Fahrt dauert knapp eine halbe Stunde.",
        "Jeden Frühling veranstaltet die kleine Stadt einen Markt auf dem zentralen "
        "Platz. Bauern bringen frisches Gemüse, Bäcker verkaufen warmes Brot, und "
        "Musiker spielen leise am Brunnen, bis die Stände abgebaut werden.",
    ),
    "es": (
        "Hoy el tiempo es templado y casi seco, y la biblioteca de la calle principal "
        "abre a las nueve de la mañana y cierra a las seis de la tarde.",
        "Por favor, recuerde traer un lápiz, un cuaderno y una botella de agua, porque el taller durará casi toda la tarde.",
        "Los trenes hacia la ciudad salen cada veinte minutos desde el andén dos, y el "
        "viaje suele durar un poco menos de media hora.",
        "Cada primavera, el pequeño pueblo organiza un mercado en la plaza central. "
        "Los agricultores traen verduras frescas, los panaderos venden pan caliente y "
        "algunos músicos tocan en voz baja junto a la fuente hasta el final de la tarde.",
    ),
    "it": (
        "Oggi il tempo è mite e quasi asciutto, e la biblioteca della via principale "
        "apre alle nove del mattino e chiude alle sei di sera.",
        "Per favore, ricordate di portare una matita, un quaderno e una bottiglia "
        "d'acqua, perché il laboratorio durerà quasi tutto il pomeriggio.",
        "I treni per la città partono ogni venti minuti dal binario due, e il viaggio dura di solito poco meno di mezz'ora.",
        "Ogni primavera il piccolo paese organizza un mercato nella piazza centrale. "
        "Gli agricoltori portano verdure fresche, i fornai vendono pane caldo e alcuni "
        "musicisti suonano piano vicino alla fontana fino al tardo pomeriggio.",
    ),
    "pt": (
        "Hoje o tempo está ameno e quase seco, e a biblioteca da rua principal abre às nove da manhã e fecha às seis da tarde.",
        "Por favor, lembre-se de trazer um lápis, um caderno e uma garrafa de água, "
        "porque a oficina vai durar quase toda a tarde.",
        "Os comboios para a cidade partem a cada vinte minutos da plataforma dois, e a "
        "viagem demora normalmente pouco menos de meia hora.",
        "Todas as primaveras, a pequena vila organiza um mercado na praça central. Os "
        "agricultores trazem legumes frescos, os padeiros vendem pão quente e alguns "
        "músicos tocam baixinho junto à fonte até ao fim da tarde.",
    ),
}

# MBROLA databases only speak the language they were recorded in; espeak-ng
# must be fed text of that language or it mispronounces (or rejects) phonemes.
_MBROLA_LANGUAGE = {"us": "en", "en": "en", "de": "de", "fr": "fr"}


# --------------------------------------------------------------------------- voices
@dataclass(frozen=True)
class Voice:
    """One synthetic speaker with a documented label.

    ``voice_id`` is passed verbatim to ``espeak-ng -v`` (MBROLA voices are
    driven through espeak-ng's ``mb-XX`` front-ends).  ``pitch`` is espeak-ng's
    ``-p`` (0-99, default 50) and is only set for the pitch sweep.
    """

    name: str
    engine: Engine
    voice_id: str
    gender: Gender
    accent: str
    pitch: int | None = None

    @property
    def language(self) -> str:
        """Language of the texts this voice must be given."""
        if self.voice_id.startswith("mb-"):
            return _MBROLA_LANGUAGE[self.voice_id[3:5]]
        return self.voice_id.split("+")[0].split("-")[0]

    @property
    def sentences(self) -> tuple[str, ...]:
        return SENTENCES[self.language]


def _es(voice_id: str, gender: Gender, accent: str) -> Voice:
    name = "espeak-" + voice_id.replace("+", "-")
    return Voice(name, "espeak", voice_id, gender, accent)


def _mb(db: str, gender: Gender, accent: str) -> Voice:
    return Voice(f"mbrola-{db}", "mbrola", f"mb-{db}", gender, accent)


#: Plain voices (default pitch).  Female/male balanced: 17 + 17.
#: espeak-ng's bare ``en`` is British English; its ``+fN``/``+mN`` variants
#: only change the speaker, not the accent.
VOICES: list[Voice] = [
    # espeak-ng, female variants
    _es("en+f1", "female", "en-GB"),
    _es("en+f2", "female", "en-GB"),
    _es("en+f3", "female", "en-GB"),
    _es("en+f4", "female", "en-GB"),
    _es("en+f5", "female", "en-GB"),
    _es("en-us+f2", "female", "en-US"),
    _es("en-us+f3", "female", "en-US"),
    _es("en-gb-scotland+f2", "female", "en-GB-scotland"),
    _es("en-029+f3", "female", "en-029 (Caribbean)"),
    _es("fr+f3", "female", "fr-FR"),
    _es("de+f4", "female", "de-DE"),
    _es("es+f2", "female", "es-ES"),
    _es("it+f3", "female", "it-IT"),
    _es("pt+f4", "female", "pt-PT"),
    # espeak-ng, male variants
    _es("en+m1", "male", "en-GB"),
    _es("en+m3", "male", "en-GB"),
    _es("en+m7", "male", "en-GB"),
    _es("en-us+m2", "male", "en-US"),
    _es("en-us+m3", "male", "en-US"),
    _es("en-gb-scotland+m3", "male", "en-GB-scotland"),
    _es("en-029+m1", "male", "en-029 (Caribbean)"),
    _es("fr+m3", "male", "fr-FR"),
    _es("de+m4", "male", "de-DE"),
    _es("es+m1", "male", "es-ES"),
    _es("it+m2", "male", "it-IT"),
    _es("pt+m5", "male", "pt-PT"),
    # MBROLA diphone voices (Debian packages mbrola-XX)
    _mb("us1", "female", "en-US"),
    _mb("de1", "female", "de-DE"),
    _mb("fr4", "female", "fr-FR"),
    _mb("us2", "male", "en-US"),
    _mb("us3", "male", "en-US"),
    _mb("en1", "male", "en-GB"),
    _mb("de2", "male", "de-DE"),
    _mb("fr1", "male", "fr-FR"),
]

#: Variants tried and rejected, with the reason (measured on espeak-ng 1.51).
DROPPED_VARIANTS: dict[str, str] = {
    "en-gb+f5": "variant silently ignored: output is the default male voice (median F0 ~100 Hz)",
    "en+Linda": "variant name is case-sensitive; 'Linda' falls back to the male default (~100 Hz)",
}

#: espeak-ng -p values for the pitch sweep.  50 is the default; the extremes
#: push en+m3 up to ~170 Hz and en+f2 down to ~125 Hz, i.e. across the
#: 150 Hz female/male boundary of ``F0_RANGE`` from both sides.
SWEEP_PITCHES: tuple[int, ...] = (0, 20, 35, 50, 65, 80, 99)
_SWEEP_BASES: tuple[tuple[str, Gender], ...] = (("en+m3", "male"), ("en+f2", "female"))

#: Same speaker, different ``-p``; labelled with the *base* voice's gender.
PITCH_SWEEP: list[Voice] = [
    Voice(f"sweep-{vid.replace('+', '-')}-p{p:02d}", "espeak", vid, gender, "en-GB", p)
    for vid, gender in _SWEEP_BASES
    for p in SWEEP_PITCHES
]


# --------------------------------------------------------------------------- synthesis
def cache_dir() -> Path:
    """Default cache location; ``$S2F_TEST_CACHE`` lets CI point at a cached volume."""
    env = os.environ.get("S2F_TEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "speech2face-tests" / "voices"


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


@functools.cache
def espeak_version() -> str:
    """Part of the cache key: a new espeak-ng changes the waveforms."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split("Data at:")[0].strip()


def _cache_key(voice: Voice, text: str) -> str:
    blob = json.dumps(
        [CACHE_FORMAT_VERSION, voice.engine, voice.voice_id, voice.pitch, text, espeak_version(), SAMPLE_RATE],
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def clip_path(voice: Voice, sentence_index: int = 0, *, out_dir: Path | None = None) -> Path:
    """Where ``synthesize`` puts (or finds) a clip, without generating it."""
    text = voice.sentences[sentence_index]
    base = Path(out_dir) if out_dir is not None else cache_dir()
    return base / f"{voice.name}-s{sentence_index}-{_cache_key(voice, text)}.wav"


def synthesize(voice: Voice, sentence_index: int = 0, *, out_dir: Path | None = None) -> Path:
    """Return a 16 kHz mono 16-bit WAV of ``voice`` reading sentence ``sentence_index``.

    Cached: an existing file is returned untouched (its mtime does not change).
    espeak-ng writes 22.05 kHz (or the MBROLA database's rate), so sox converts;
    ``-D`` disables dither so the output is bit-identical across runs.
    """
    target = clip_path(voice, sentence_index, out_dir=out_dir)
    if target.is_file() and target.stat().st_size > 44:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["espeak-ng", "-b", "1", "-v", voice.voice_id]
    if voice.pitch is not None:
        cmd += ["-p", str(voice.pitch)]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".tmp-") as tmp:
        raw, conv = Path(tmp) / "raw.wav", Path(tmp) / "conv.wav"
        # Text goes through stdin so no sentence can be mistaken for an option.
        proc = subprocess.run(
            cmd + ["-w", str(raw), "--stdin"], input=voice.sentences[sentence_index].encode(), capture_output=True
        )
        if proc.returncode != 0 or not raw.is_file() or raw.stat().st_size <= 44:
            raise RuntimeError(f"espeak-ng failed for {voice.voice_id}: {proc.stderr.decode(errors='replace').strip()}")
        _sox(raw, conv, rate=SAMPLE_RATE, channels=1)
        os.replace(conv, target)
    return target


def _sox(src: Path, dst: Path, *, rate: int, channels: int) -> None:
    subprocess.run(
        ["sox", "-D", str(src), "-r", str(rate), "-c", str(channels), "-b", "16", "-e", "signed-integer", str(dst)],
        check=True,
        capture_output=True,
    )


def _run_jobs(jobs: Sequence[tuple[Voice, int]], out_dir: Path | None, workers: int, progress: bool) -> list[Path]:
    """Synthesize many clips with a small pool; threads suffice (the work is in subprocesses)."""
    missing = sum(not clip_path(v, i, out_dir=out_dir).is_file() for v, i in jobs)
    verbose = progress and missing >= _PROGRESS_MIN_JOBS
    if verbose:
        print(
            f"[voices] generating {missing} of {len(jobs)} clips into {out_dir or cache_dir()} with {workers} workers",
            file=sys.stderr,
            flush=True,
        )
    results: list[Path] = []
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(synthesize, v, i, out_dir=out_dir) for v, i in jobs]
        for n, (fut, (v, i)) in enumerate(zip(futures, jobs), 1):
            results.append(fut.result())
            if verbose and (n % 10 == 0 or n == len(jobs)):
                print(f"[voices] {n}/{len(jobs)} {v.name} s{i} ({time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)
    return results


def generate_corpus(
    voices: Iterable[Voice] = VOICES, *, out_dir: Path | None = None, workers: int = 2, progress: bool = True
) -> dict[str, list[Path]]:
    """All sentences of every voice: name -> [clip for sentence 0, 1, ...]."""
    voices = list(voices)
    jobs = [(v, i) for v in voices for i in range(len(v.sentences))]
    paths = iter(_run_jobs(jobs, out_dir, workers, progress))
    return {v.name: [next(paths) for _ in v.sentences] for v in voices}


def generate_pitch_sweep(*, out_dir: Path | None = None, workers: int = 2, progress: bool = True) -> list[tuple[Voice, Path]]:
    """Sentence 0 of every sweep voice, in ``PITCH_SWEEP`` order."""
    paths = _run_jobs([(v, 0) for v in PITCH_SWEEP], out_dir, workers, progress)
    return list(zip(PITCH_SWEEP, paths))


def voice_by_name(name: str) -> Voice:
    for v in VOICES + PITCH_SWEEP:
        if v.name == name:
            return v
    raise KeyError(name)


#: The reference clean clips used by ``speech_wav``: one per label, ~6.6 s
#: (sentence 2, the shortest English one).
SPEECH_WAV_VOICES: dict[Gender, str] = {"female": "espeak-en-us-f2", "male": "espeak-en-us-m2"}
SPEECH_WAV_SENTENCE = 2


# --------------------------------------------------------------------------- analysis
def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> (float32 samples in [-1, 1], shape (n,) or (n, ch); rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM")
        ch, rate = w.getnchannels(), w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    return (data if ch == 1 else data.reshape(-1, ch)), rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write float [-1,1] or int16 samples ((n,) or (n, ch)) as 16-bit PCM, atomically."""
    if samples.dtype != np.int16:
        samples = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
    ch = 1 if samples.ndim == 1 else samples.shape[1]
    with _atomic(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(ch)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples.astype("<i2").tobytes())


def median_f0(path: Path, *, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median F0 (Hz) over voiced frames, by normalised autocorrelation.

    Kept dependency-free (no parselmouth) so CI needs nothing extra; on this
    corpus it agrees with Praat's pitch tracker within a few Hz.  Octave errors
    are avoided by taking the *shortest* lag whose correlation is within 10 %
    of the best one (a period's multiples correlate almost as well).
    """
    x, rate = read_wav(path)
    if x.ndim == 2:
        x = x.mean(axis=1)
    frame, hop = int(0.04 * rate), int(0.01 * rate)
    if len(x) < frame:
        return float("nan")
    idx = np.arange(frame)[None, :] + hop * np.arange((len(x) - frame) // hop + 1)[:, None]
    frames = x[idx]
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = np.sqrt((frames**2).mean(axis=1))
    frames = frames[rms > 0.1 * rms.max()] if rms.max() > 0 else frames[:0]
    if not len(frames):
        return float("nan")
    nfft = 1 << (2 * frame - 1).bit_length()
    spec = np.fft.rfft(frames, nfft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, nfft, axis=1)[:, :frame]
    ac = ac / (frame - np.arange(frame))[None, :]  # unbiased: long lags see fewer samples
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(rate / fmax), min(int(rate / fmin), frame // 2)
    seg = ac[:, lo:hi]
    best = seg.max(axis=1)
    voiced = best > 0.6
    if not voiced.any():
        return float("nan")
    seg, best = seg[voiced], best[voiced]
    lag = np.argmax(seg >= 0.9 * best[:, None], axis=1)
    # Refine to the local peak starting from the first qualifying lag.
    rows = np.arange(len(seg))
    while True:
        nxt = np.minimum(lag + 1, seg.shape[1] - 1)
        up = seg[rows, nxt] > seg[rows, lag]
        if not up.any():
            break
        lag = np.where(up, nxt, lag)
    # Parabolic interpolation around the peak: integer lags alone quantise
    # 200 Hz to 2.5 Hz steps.
    a = seg[rows, np.maximum(lag - 1, 0)]
    b = seg[rows, lag]
    c = seg[rows, np.minimum(lag + 1, seg.shape[1] - 1)]
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    return float(np.median(rate / (lag + lo + np.clip(shift, -0.5, 0.5))))


def duration_s(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


# --------------------------------------------------------------------------- bad inputs
#: Keys of the one-clip-per-container/codec fixtures.
FORMAT_KEYS: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "opus", "webm", "m4a")
#: Bump when ``make_bad_inputs`` changes so cached fixture directories are rebuilt.
BAD_INPUTS_VERSION = 1
LONG_SECONDS = 600.0


class _atomic:
    """Context manager yielding a temp path next to ``path``; renamed into place on success."""

    def __init__(self, path: Path, suffix: str | None = None) -> None:
        self.path = Path(path)
        self.suffix = suffix if suffix is not None else self.path.suffix

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=self.suffix)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.chmod(self.tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from others
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _png_bytes() -> bytes:
    """A valid 1x1 PNG: a real file of the wrong kind is a harsher test than random bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x80\x00")) + chunk(b"IEND", b"")


def encode_av(
    path: Path,
    samples: np.ndarray,
    rate: int,
    codec: str,
    *,
    container: str | None = None,
    bit_rate: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode int16 samples ((n,) or (n, ch)) with PyAV, atomically.

    Frames are fed in small chunks with explicit pts; PyAV re-chunks to the
    codec's frame size and converts the sample format (aac/vorbis want fltp).
    """
    import av  # local: listing the corpus must not need PyAV

    if samples.ndim == 1:
        samples = samples[:, None]
    ch = samples.shape[1]
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[ch]
    fmt = container or {".opus": "ogg", ".m4a": "ipod"}.get(Path(path).suffix)
    with _atomic(path) as tmp:
        with av.open(str(tmp), "w", format=fmt or Path(path).suffix.lstrip(".")) as out:
            stream = out.add_stream(codec, rate=rate, layout=layout, options=options or {})
            if bit_rate:
                stream.bit_rate = bit_rate
            interleaved = np.ascontiguousarray(samples.astype(np.int16)).reshape(1, -1)
            step = 4096
            for start in range(0, len(samples), step):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(interleaved[:, start * ch : (start + step) * ch]), format="s16", layout=layout
                )
                frame.sample_rate = rate
                frame.pts = start
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    return Path(path)


def _encode_vorbis(path: Path, src_wav: Path, samples: np.ndarray, rate: int) -> Path:
    """Ogg/Vorbis: this PyAV wheel lacks libvorbis and FFmpeg's native encoder is
    experimental and stereo-only, so prefer sox (libvorbis) and fall back to it."""
    import av

    if "libvorbis" in av.codecs_available:
        return encode_av(path, samples, rate, "libvorbis")
    if shutil.which("sox"):
        with _atomic(path) as tmp:
            subprocess.run(["sox", str(src_wav), "-t", "vorbis", str(tmp)], check=True, capture_output=True)
        return Path(path)
    stereo = np.repeat(samples[:, None], 2, axis=1)
    return encode_av(path, stereo, rate, "vorbis", options={"strict": "experimental"})


def _loudest_window(x: np.ndarray, n: int) -> int:
    """Start index of the n-sample window with most energy (so the cut is really speech)."""
    energy = np.convolve(x.astype(np.float64) ** 2, np.ones(n), mode="valid")
    return int(np.argmax(energy))


def bad_inputs_dir() -> Path:
    """Cache location for ``make_bad_inputs`` keyed by what changes its output
    (the source clip's name already encodes voice, text and espeak-ng version)."""
    import av

    source = clip_path(voice_by_name(SPEECH_WAV_VOICES["female"]), 0).name
    key = hashlib.sha256(json.dumps([BAD_INPUTS_VERSION, source, av.__version__]).encode()).hexdigest()[:12]
    return cache_dir() / f"bad-inputs-{key}"


def make_bad_inputs(directory: Path, *, source: Voice | None = None) -> dict[str, Path]:
    """Write every bad-input / format fixture into ``directory`` and return name -> path.

    Files that already exist are kept (all writes are atomic), so the same
    directory can be shared by parallel workers and reused across sessions.
    Speech is a synthesised clip (sentence 0 of ``source``, default the female
    ``speech_wav`` voice) so decoding problems are not confused with content.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    voice = source or voice_by_name(SPEECH_WAV_VOICES["female"])
    speech_wav = synthesize(voice, 0)
    x, rate = read_wav(speech_wav)
    pcm = np.round(x * 32768).clip(-32768, 32767).astype(np.int16)
    paths: dict[str, Path] = {}

    def want(key: str, filename: str) -> Path | None:
        """Register ``key``; return its path only if it still has to be written."""
        p = d / filename
        paths[key] = p
        return None if p.exists() else p

    if p := want("empty", "empty.wav"):
        with _atomic(p) as tmp:
            tmp.write_bytes(b"")
    if p := want("not_audio", "not_audio.wav"):
        with _atomic(p) as tmp:
            tmp.write_bytes(_png_bytes())
    if p := want("not_audio_text", "not_audio_text.wav"):
        with _atomic(p) as tmp:
            tmp.write_text("This is a text file, not audio.\n" * 20)
    if p := want("silence", "silence.wav"):
        write_wav(p, np.zeros(5 * SAMPLE_RATE, np.int16), SAMPLE_RATE)
    if p := want("noise_floor", "noise_floor.wav"):
        # ~-70 dBFS white noise: above digital zero, far below any speech.
        rng = np.random.default_rng(1234)
        write_wav(p, np.round(rng.normal(0, 10, 5 * SAMPLE_RATE)).astype(np.int16), SAMPLE_RATE)
    if p := want("short_speech", "short_speech.wav"):
        n = int(0.3 * rate)
        start = _loudest_window(pcm, n)
        write_wav(p, pcm[start : start + n], rate)

    # One speech clip per container/codec.
    for key in FORMAT_KEYS:
        p = want(key, f"speech.{key}")
        if p is None:
            continue
        if key == "wav":
            write_wav(p, pcm, rate)
        elif key == "flac":
            encode_av(p, pcm, rate, "flac")
        elif key == "mp3":
            encode_av(p, pcm, rate, "libmp3lame", bit_rate=32_000)
        elif key == "ogg":
            _encode_vorbis(p, speech_wav, pcm, rate)
        elif key in ("opus", "webm"):
            encode_av(p, pcm, rate, "libopus", bit_rate=24_000)
        elif key == "m4a":
            encode_av(p, pcm, rate, "aac", bit_rate=48_000)

    # Cut mid-stream: the header promises more data than the file holds.
    if p := want("truncated", "truncated.wav"):
        blob = paths["wav"].read_bytes()
        with _atomic(p) as tmp:
            tmp.write_bytes(blob[: int(len(blob) * 0.3)])
    if p := want("truncated_mp3", "truncated.mp3"):
        blob = paths["mp3"].read_bytes()
        with _atomic(p) as tmp:
            tmp.write_bytes(blob[: int(len(blob) * 0.3)])

    # Unusual sample rates / channel counts, resampled by sox from the 16 kHz clip.
    for key, r, c in (("rate_8k", 8000, 1), ("rate_44k_stereo", 44100, 2), ("rate_48k_6ch", 48000, 6)):
        if p := want(key, f"{key}.wav"):
            with _atomic(p) as tmp:
                _sox(speech_wav, tmp, rate=r, channels=c)

    # Ten minutes of looped speech with short gaps.  Ogg/Opus at 16 kb/s keeps it
    # ~1.2 MB, carries an exact duration, and at complexity 0 encodes in ~2 s
    # (MP3 at LAME's default quality took ~8 s on two cores).
    if p := want("long", "long.opus"):
        gap = np.zeros(int(0.5 * rate), np.int16)
        unit = np.concatenate([pcm, gap])
        total = int(LONG_SECONDS * rate)
        looped = np.tile(unit, total // len(unit) + 1)[:total]
        encode_av(p, looped, rate, "libopus", bit_rate=16_000, options={"compression_level": "0"})
    return paths


# --------------------------------------------------------------------------- CLI
def _list(workers: int) -> None:
    corpus = generate_corpus(workers=workers)
    sweep = generate_pitch_sweep(workers=workers)
    header = (
        f"{'name':28} {'engine':6} {'voice_id':20} {'gender':6} {'accent':20} {'pitch':>5} "
        f"{'F0 med':>7} {'F0 s0..':>20} {'dur s0..':>22}"
    )
    print(header)
    print("-" * len(header))
    rows = [(v, corpus[v.name]) for v in VOICES] + [(v, [p]) for v, p in sweep]
    for v, paths in rows:
        f0s = [median_f0(p) for p in paths]
        lo, hi = F0_RANGE[v.gender]
        flag = "" if v.pitch is not None or lo <= np.median(f0s) <= hi else "  <-- outside label range"
        print(
            f"{v.name:28} {v.engine:6} {v.voice_id:20} {v.gender:6} {v.accent:20} "
            f"{'-' if v.pitch is None else v.pitch:>5} {np.median(f0s):7.1f} "
            f"{'/'.join(f'{f:.0f}' for f in f0s):>20} "
            f"{'/'.join(f'{duration_s(p):.1f}' for p in paths):>22}{flag}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.voices", description=__doc__.split("\n")[0])
    ap.add_argument("--all", action="store_true", help="generate corpus, pitch sweep and bad inputs")
    ap.add_argument("--list", action="store_true", help="print voices, labels and measured F0")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if not espeak_available():
        print("espeak-ng and sox are required (apt-get install espeak-ng sox libsox-fmt-all)", file=sys.stderr)
        return 2
    if not (args.all or args.list):
        ap.print_help()
        return 1
    t0 = time.monotonic()
    if args.all:
        generate_corpus(workers=args.workers)
        generate_pitch_sweep(workers=args.workers)
        print(f"[voices] bad inputs -> {bad_inputs_dir()}", file=sys.stderr, flush=True)
        make_bad_inputs(bad_inputs_dir())
        print(f"[voices] done in {time.monotonic() - t0:.1f}s (cache: {cache_dir()})", file=sys.stderr)
    if args.list:
        _list(args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
