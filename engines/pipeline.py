"""AvatarPipeline: per-speaker incremental state, the one path both the live call and the CLI use.

Speech (after VAD) is cut into fixed 0.5 s blocks of the *speech* stream and into 1.6 s
encoder partials of that same stream. Both are positions in the speech stream, never in the
chunks the caller happened to push, so pushing a file in 20 ms chunks ends at exactly the
numbers of the one-shot path. Completed blocks fold into the running voice profile, completed
partials into the running mean embedding, and the ``Cadence`` (engines/cadence.py) says which
blocks Praat analyses, how far apart partials start and at which blocks a refinement (decoder
run) falls: every block while the face is young, then less often as the measured change per
refinement falls. Partials wait for the refinement that needs them, so a server can encode
them in one batch. Memory per session is bounded: only the last partial's worth of speech (and
the partials awaiting their refinement) is kept, and nothing is ever written to disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .backends import Backend, embed_in_batches, make_backend
from .cadence import ADAPTIVE, Cadence, CadenceRule
from .choices import MAX_SPEECH_SECONDS, SAMPLE_RATE
from .decoder import AGE_BANDS
from .encoder import PARTIAL_HOP_SAMPLES, PARTIAL_SAMPLES
from .face import N_PARAMS, PARAM_INDEX, SPECS_BY_NAME, FaceParams
from .identity import IdentityBasis, identity_basis
from .look import apply_look, check_seed
from .mel import mel_spectrogram
from .profile import FEATURE_NAMES, ST_REF, VoiceProfile
from .vad import StreamingVad

BLOCK_SAMPLES = SAMPLE_RATE // 2  # a refinement every 0.5 s of new speech
MIN_FACE_SECONDS = 1.0  # below this the neutral face is shown
CONFIDENT_SECONDS = 6.0  # the paper's longer window; the UI's progress ring fills here
NORM_TARGET_DBFS = -30.0  # resemblyzer's training-time loudness normalisation
PUSH_SECONDS = 0.2  # live feeders push at least this much audio at once: same refinements, fewer executor hops
_VOICED_S, _SPEECH_S = FEATURE_NAMES.index("voiced_s"), FEATURE_NAMES.index("speech_s")


@dataclass(frozen=True)
class Update:
    params: FaceParams
    p_female: float
    age_probs: dict[str, float]
    confidence: float
    seconds_heard: float
    version: int
    message: str | None = None
    voice: dict[str, float] = field(default_factory=dict)  # the profile the decoder saw (FEATURE_NAMES)
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)  # in memory only

    @property
    def f0_median_hz(self) -> float:
        st = self.voice.get("f0_median_st", 0.0)
        return ST_REF * 2 ** (st / 12) if st > 0 else float("nan")

    @property
    def gender(self) -> str:
        return "female" if self.p_female >= 0.5 else "male"

    @property
    def age_label(self) -> str:
        return max(self.age_probs, key=self.age_probs.__getitem__)

    def to_json(self) -> dict[str, Any]:
        return {
            "speech_seconds": round(self.seconds_heard, 3),
            "gender": {"label": self.gender, "p_female": round(self.p_female, 4)},
            "age": {"label": self.age_label, "probs": {k: round(v, 4) for k, v in self.age_probs.items()}},
            "face": {"params": self.params.as_dict(), "vector": [round(float(x), 6) for x in self.params.vector]},
            "confidence": round(self.confidence, 4),
            "voice": {
                "f0_median_hz": None if np.isnan(self.f0_median_hz) else round(self.f0_median_hz, 1),
                **{k: round(v, 4) for k, v in self.voice.items() if k not in ("f0_median_st",)},
            },
            "version": self.version,
            "message": self.message,
        }


def _loudness_normalise(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms <= 1e-9:
        return x
    gain = 10 ** ((NORM_TARGET_DBFS - 20 * np.log10(rms)) / 20)
    return x * np.float32(gain) if gain > 1.0 else x  # increase only, as at training time


OVERRIDE_KEYS = ("gender_presentation", "skin_tone", "hair_style", "hair_colour", "eye_colour", "glasses", "facial_hair", "age")


def parse_overrides(overrides: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """User choices → (values, mask) over PARAM_NAMES. Raises ValueError with the allowed values."""
    values = np.zeros(N_PARAMS, np.float32)
    mask = np.zeros(N_PARAMS, np.float32)

    def put(name: str, v: float) -> None:
        values[PARAM_INDEX[name]] = v
        mask[PARAM_INDEX[name]] = 1.0

    for key, raw in (overrides or {}).items():
        if raw is None or raw == "" or raw == "auto":
            continue
        if key == "gender_presentation":
            named = {"feminine": 0.9, "masculine": 0.1, "neutral": 0.5, "androgynous": 0.5}
            v = named.get(str(raw).lower()) if isinstance(raw, str) else float(raw)
            if v is None or not 0.0 <= v <= 1.0:
                raise ValueError("gender_presentation must be feminine, masculine, neutral or a number in [0, 1]")
            put("femininity", v)
        elif key in ("skin_tone", "hair_style", "hair_colour", "eye_colour"):
            spec = SPECS_BY_NAME[key]
            if raw not in spec.categories:
                raise ValueError(f"{key} must be one of: {', '.join(spec.categories)}")
            put(key, spec.value_of(raw))
        elif key == "glasses":
            put("glasses", 0.8 if str(raw).lower() in ("1", "true", "yes", "on") else 0.0)
        elif key == "facial_hair":
            put("facial_hair", 0.0 if str(raw).lower() in ("none", "0", "false") else 0.8)
        elif key == "age":
            v = float(raw)
            if not 0.0 <= v <= 1.0:
                raise ValueError("age override must be in [0, 1]")
            put("age", v)
        else:
            raise ValueError(f"unknown override {key!r}; allowed: {', '.join(OVERRIDE_KEYS)}")
    return values, mask


class AvatarPipeline:
    """Not thread-safe: one owner (a call's executor job, or the CLI) pushes at a time."""

    def __init__(
        self,
        backend: Backend,
        identity: IdentityBasis,
        overrides: Mapping[str, Any] | None = None,
        max_speech_seconds: float = MAX_SPEECH_SECONDS,
        seed: str | None = None,
        cadence: CadenceRule = ADAPTIVE,
    ) -> None:
        self._backend = backend
        self._identity = identity
        self._seed = check_seed(seed)
        self._override_values, self._override_mask = apply_look(*parse_overrides(overrides), self._seed)
        self._vad = StreamingVad()
        self._profile = VoiceProfile()
        self._max_samples = int(max_speech_seconds * SAMPLE_RATE)
        self._cadence = Cadence(PARTIAL_HOP_SAMPLES, PARTIAL_SAMPLES, cadence)
        self._held = np.zeros(0, np.float32)  # speech behind a refinement that sets the cadence
        self._deciding = False  # stopped at that refinement until it is decoded
        self._analysed = 0  # speech samples Praat has analysed
        self._block = np.zeros(0, np.float32)  # speech not yet in a full block
        self._tail = np.zeros(0, np.float32)  # last PARTIAL_SAMPLES of speech, for partials
        self._tail_start = 0  # speech-stream index of _tail[0]
        self._heard = 0  # speech samples accepted
        self._next_partial = 0  # speech-stream start of the next partial
        self._emb_sum = np.zeros(256, np.float64)
        self._n_partials = 0
        self._version = 0
        self._blocks_pending = 0  # refinement points passed, not yet decoded
        self._decoded_at = 0  # speech-stream position the next refinement describes
        self._pending_mels: list[np.ndarray] = []  # partials not yet through the encoder
        self._finished = False
        self.current = self._neutral()

    # ------------------------------------------------------------------ public
    @property
    def seconds_heard(self) -> float:
        return self._heard / SAMPLE_RATE

    @property
    def seconds_until_refinement(self) -> float:
        """Speech still to come before the next refinement can fall (a feeder need not push sooner)."""
        blocks = max(self._cadence.next_refinement, self._heard // BLOCK_SAMPLES + 1)
        return max(0.0, (blocks * BLOCK_SAMPLES - self._heard - len(self._held)) / SAMPLE_RATE)

    @property
    def cadence(self) -> Cadence:
        return self._cadence

    def set_overrides(self, overrides: Mapping[str, Any] | None, seed: str | None | bool = False) -> Update:
        """New user choices (and, unless ``seed`` is False, a new look seed; None = defaults)."""
        if seed is not False:
            self._seed = check_seed(seed)
        self._override_values, self._override_mask = apply_look(*parse_overrides(overrides), self._seed)
        self._version += 1
        self.current = self._refine()
        # the user's change is not the voice's: measure the next step from the new face
        if self._decoded_at // BLOCK_SAMPLES >= self._cadence.rule.young_blocks - self._cadence.rule.rate_span_blocks:
            self._cadence.rebase(self._decoded_at // BLOCK_SAMPLES, self.current.params.vector, forget=True)
        return self.current

    def push(self, pcm16k: np.ndarray) -> Update | None:
        """Feed any amount of 16 kHz mono float32; returns the newest Update if one was made.

        Every refinement point passed advances ``version``; when one push passes several only
        the last state is decoded (the intermediate faces would never be seen), except where a
        refinement's face sets the cadence: there the push stops, decodes, and goes on.
        """
        self.ingest(pcm16k)
        update = self.complete()
        while self.pending:
            self.advance()
            update = self.complete() or update
        return update

    def finish(self) -> Update:
        """End of a file: decide the VAD's held-back frames, fold the last partial block and
        describe everything heard (a refinement, wherever the cadence would have put the next)."""
        if not self._finished:
            self._accept(self._vad.flush())
            self.complete()
            while self.pending:
                self.advance()
                self.complete()
            self._finished = True
            if len(self._block) >= int(0.1 * SAMPLE_RATE):
                if self._cadence.analyses(self._heard // BLOCK_SAMPLES + 1, self._voiced_seconds()):
                    self._profile.add_block(self._block)
                    self._analysed += len(self._block)
                self._block = np.zeros(0, np.float32)
            if self._decoded_at < self._heard - len(self._block):
                self._decoded_at = self._heard - len(self._block)
                self._blocks_pending += 1
                self.complete()
        return self.current

    # ------------------------------------------------------- two-phase push (batching)
    def ingest(self, pcm16k: np.ndarray) -> None:
        """Phase 1 of push: VAD, blocks, voice profile and partial mels — no network runs.
        Stops at a refinement that sets the cadence; ``pending`` then says more speech waits."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        self._accept(self._vad.push(pcm16k))

    @property
    def pending(self) -> bool:
        """Speech waits behind a refinement: complete() it, then advance()."""
        return bool(self._held.size) and not self._deciding

    def advance(self) -> None:
        """Phase 1 again for the speech behind the refinement complete() just decoded."""
        self._consume()

    def take_mels(self) -> list[np.ndarray]:
        """The encoder inputs the coming refinement needs, for a caller that batches many
        pipelines. Between refinements nothing is taken: partials wait, and go in one batch."""
        if not self._blocks_pending:
            return []
        mels, self._pending_mels = self._pending_mels, []
        return mels

    def complete(self, embeddings: np.ndarray | None = None) -> Update | None:
        """Phase 2: fold encoder outputs (given, or computed here one partial at a time so a
        single pipeline is bit-identical however it was chunked), then decode once."""
        if embeddings is None:
            mels = self.take_mels()
            embeddings = np.concatenate([self._backend.embed(m[None]) for m in mels]) if mels else None
        for e in () if embeddings is None else embeddings:  # row by row: same sum however grouped
            self._emb_sum += e
            self._n_partials += 1
        if not self._blocks_pending:
            return None
        self._version += self._blocks_pending
        self._blocks_pending = 0
        self.current = self._refine()
        if self._deciding:
            self._cadence.decided(self._decoded_at // BLOCK_SAMPLES, self.current.params.vector)
            self._deciding = False
        return self.current

    # ------------------------------------------------------------------ internals
    def _accept(self, speech: np.ndarray) -> None:
        room = self._max_samples - self._heard - len(self._held)
        if room <= 0 or len(speech) == 0:
            return
        self._held = np.concatenate([self._held, speech[:room]])
        self._consume()

    def _consume(self) -> None:
        speech, pos = self._held, 0
        while pos < len(speech) and not self._deciding:
            take = min(BLOCK_SAMPLES - len(self._block), len(speech) - pos)
            piece = speech[pos : pos + take]
            pos += take
            self._block = np.concatenate([self._block, piece])
            self._extend_tail(piece)
            if len(self._block) == BLOCK_SAMPLES:
                self._complete_block()
        self._held = speech[pos:]

    def _complete_block(self) -> None:
        blocks = self._heard // BLOCK_SAMPLES
        if self._cadence.analyses(blocks, self._voiced_seconds()):
            self._profile.add_block(self._block)
            self._analysed += BLOCK_SAMPLES
        self._block = np.zeros(0, np.float32)
        self._queue_partials()
        if self._cadence.refines_at(blocks):
            self._blocks_pending += 1
            self._decoded_at = self._heard  # refinements describe block boundaries
            self._deciding = self._cadence.decides_at(blocks)

    def _voiced_seconds(self) -> float:
        return self._profile.voiced_frames * 0.01

    def _features(self) -> np.ndarray:
        """The profile's features, its counts scaled from the analysed blocks to all speech heard."""
        features = self._profile.features()
        if 0 < self._analysed < self._decoded_at:
            features[_VOICED_S] *= self._decoded_at / self._analysed
            features[_SPEECH_S] = self._decoded_at / SAMPLE_RATE
        return features

    def _extend_tail(self, piece: np.ndarray) -> None:
        self._tail = np.concatenate([self._tail, piece])
        self._heard += len(piece)
        excess = len(self._tail) - PARTIAL_SAMPLES
        if excess > 0 and self._tail_start + excess <= self._next_partial:
            self._tail = self._tail[excess:]
            self._tail_start += excess

    def _queue_partials(self) -> None:
        while self._next_partial + PARTIAL_SAMPLES <= self._heard:
            a = self._next_partial - self._tail_start
            window = self._tail[a : a + PARTIAL_SAMPLES]
            self._pending_mels.append(mel_spectrogram(_loudness_normalise(window))[:160])
            self._next_partial += self._cadence.partial_hop
            # drop what no future partial needs
            drop = self._next_partial - self._tail_start
            self._tail = self._tail[drop:]
            self._tail_start += drop

    def _embedding(self) -> np.ndarray:
        if self._n_partials:
            e = self._emb_sum / self._n_partials
        else:  # under 1.6 s of speech: a provisional embedding of everything heard so far
            upto = self._decoded_at - self._tail_start  # the state at the last block boundary
            e = self._backend.embed(mel_spectrogram(_loudness_normalise(self._tail[:upto]))[None])[0].astype(np.float64)
        return (e / max(float(np.linalg.norm(e)), 1e-12)).astype(np.float32)

    def _neutral(self, message: str | None = None) -> Update:
        params = FaceParams.neutral()
        if self._override_mask.any():
            v = params.vector.copy()
            m = self._override_mask > 0
            v[m] = self._override_values[m]
            params = FaceParams(v)
        seconds = self._decoded_at / SAMPLE_RATE
        message = message or _more_speech_message(seconds)
        return Update(params, 0.5, {"child": 0.1, "adult": 0.8, "senior": 0.1}, 0.0, seconds, self._version, message)

    def _refine(self) -> Update:
        seconds = self._decoded_at / SAMPLE_RATE
        if seconds < MIN_FACE_SECONDS:
            return self._neutral(_more_speech_message(seconds))
        ident = self._identity
        features = self._features()
        feeds = {
            "embedding": self._embedding()[None],
            "features": features[None],
            "basis": ident.basis,
            "center": ident.center,
            "code_scale": ident.code_scale,
            "override_values": self._override_values[None],
            "override_mask": self._override_mask[None],
        }
        out = self._backend.decode(feeds)
        age = out["age_probs"][0]
        return Update(
            params=FaceParams(out["params"][0]),
            p_female=float(out["p_female"][0]),
            age_probs={k: float(v) for k, v in zip(AGE_BANDS, age)},
            confidence=float(out["confidence"][0]),
            seconds_heard=seconds,
            version=self._version,
            message=_more_speech_message(seconds),
            voice={k: float(v) for k, v in zip(FEATURE_NAMES, features)},
            embedding=feeds["embedding"][0],
        )


def _more_speech_message(seconds: float) -> str | None:
    if seconds >= CONFIDENT_SECONDS:
        return None
    need = CONFIDENT_SECONDS - seconds
    if seconds < MIN_FACE_SECONDS:
        return (
            f"heard {seconds:.1f} s of speech: too little for a face yet; about {need:.1f} s more speech gives a confident face"
        )
    return f"heard {seconds:.1f} s of speech; about {need:.1f} s more speech gives a confident face"


class AvatarEngine:
    """Loads the models once per process; hands out cheap per-speaker pipelines."""

    def __init__(self, backend: str = "onnx", room_secret: str = "") -> None:
        self.backend_name = backend
        self.backend = make_backend(backend)
        self._room_secret = room_secret

    def pipeline(
        self,
        privacy: str = "stable",
        room: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        max_speech_seconds: float = MAX_SPEECH_SECONDS,
        seed: str | None = None,
        cadence: CadenceRule = ADAPTIVE,
    ) -> AvatarPipeline:
        salt = None if room is None else f"{self._room_secret}\0{room}"
        return AvatarPipeline(
            self.backend, identity_basis(privacy, salt), overrides, max_speech_seconds, seed=seed, cadence=cadence
        )

    def push_many(
        self,
        items: Sequence[tuple[AvatarPipeline, np.ndarray]],
        on_encode: Callable[[int, float], None] | None = None,
    ) -> list[Update | None | Exception]:
        """Push audio into many pipelines with one batched encoder run per round.

        The GE2E LSTM is memory-bound at batch 1 (its weights stream from cache every frame);
        a batch of 4 costs ~2.4x less per partial, so a server with many callers runs their
        partials together (and each pipeline's partials wait for its next refinement, so they
        batch over time too). A pipeline that stops at a refinement which sets its cadence goes
        on in a further round. Results match per-pipeline pushes to float rounding. A failure in
        one pipeline is returned in its slot, never raised: one caller's bad audio must not
        fail the others' refinements. ``on_encode(batch, cpu_seconds)`` hears of each encoder run
        (the server's metrics: the batch sizes it reaches and the encoder's CPU per partial).
        """
        out: list[Update | None | Exception] = [None] * len(items)
        live: list[int] = []
        for i, (pipe, pcm) in enumerate(items):
            try:
                pipe.ingest(pcm)
                live.append(i)
            except Exception as exc:  # noqa: BLE001 - reported per caller
                out[i] = exc
        while live:
            mels: dict[int, list[np.ndarray]] = {}
            for i in live:
                try:
                    mels[i] = items[i][0].take_mels()
                except Exception as exc:  # noqa: BLE001
                    out[i] = exc
            flat = [m for ms in mels.values() for m in ms]
            embs = self._embed_batch(flat, on_encode)
            start, again = 0, []
            for i, ms in mels.items():
                pipe = items[i][0]
                chunk, start = embs[start : start + len(ms)], start + len(ms)
                try:
                    update = pipe.complete(chunk)
                    if update is not None:
                        out[i] = update
                    if pipe.pending:
                        pipe.advance()
                        again.append(i)
                except Exception as exc:  # noqa: BLE001
                    out[i] = exc
            live = again
        return out

    def _embed_batch(self, mels: list[np.ndarray], on_encode: Callable[[int, float], None] | None) -> np.ndarray:
        if not mels:
            return np.zeros((0, 256), np.float32)
        started = time.thread_time()
        embs = embed_in_batches(self.backend, np.stack(mels))
        if on_encode is not None:
            on_encode(len(mels), time.thread_time() - started)
        return embs

    def analyze(
        self,
        pcm16k: np.ndarray,
        seconds: float | None = None,
        privacy: str = "stable",
        room: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        seed: str | None = None,
        cadence: CadenceRule = ADAPTIVE,
    ) -> Update:
        """One-shot: the whole clip (or its first ``seconds`` of speech) through one pipeline."""
        limit = MAX_SPEECH_SECONDS if seconds is None else min(float(seconds), MAX_SPEECH_SECONDS)
        if limit <= 0:
            raise ValueError("seconds must be positive")
        pipe = self.pipeline(privacy, room, overrides, max_speech_seconds=limit, seed=seed, cadence=cadence)
        pipe.push(pcm16k)
        return pipe.finish()
