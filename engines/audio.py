"""Audio front end: any common file → 16 kHz mono float32, with errors a person can act on.

PyAV (FFmpeg) decodes every container the product accepts (wav, flac, mp3, ogg/opus,
webm, m4a) and its resampler does the rate/channel conversion, so there is one decode
path for files, uploads and the live call. Decoding is streamed: a ten-minute upload is
read in chunks and stops at ``max_seconds`` instead of being held in memory whole.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from .choices import SAMPLE_RATE

#: What the CLI and REST path accept by default: beyond this the rest of a file is ignored
#: (the face stops changing long before; see pipeline.MAX_SPEECH_SECONDS).
DEFAULT_MAX_SECONDS = 600.0


class AudioError(ValueError):
    """A decode failure whose message is meant for the person who supplied the file."""


@dataclass(frozen=True)
class DecodedAudio:
    pcm: np.ndarray  # float32, mono, 16 kHz
    source_rate: int
    source_channels: int
    codec: str
    truncated_at_cap: bool  # True when max_seconds cut the file short (not an error)

    @property
    def seconds(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


Source = str | os.PathLike[str] | bytes | BinaryIO


def _check_riff(head: bytes, total: int) -> None:
    """FFmpeg clamps a WAV's data size to the bytes present, so truncation is checked here."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"fmt " and pos + 16 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        if cid == b"data":
            available = total - (pos + 8)
            if size not in (0, 0xFFFFFFFF) and available < 0.9 * size and byte_rate > 0:
                raise AudioError(
                    f"the file is truncated: its header declares {size / byte_rate:.1f} s of audio "
                    f"but only {max(available, 0) / byte_rate:.1f} s is present"
                )
            return
        pos += 8 + size + (size & 1)


def _open(source: Source) -> av.container.InputContainer:
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise AudioError("the file is empty (0 bytes)")
        _check_riff(bytes(source[:65536]), len(source))
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"no such file: {path}")
        if path.is_dir():
            raise AudioError(f"{path} is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{path.name} is empty (0 bytes)")
        with path.open("rb") as fh:
            _check_riff(fh.read(65536), path.stat().st_size)
        source = str(path)
    try:
        return av.open(source, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        raise AudioError("this is not an audio file FFmpeg can read (unknown or corrupt container)") from exc
    except av.error.FFmpegError as exc:
        raise AudioError(f"cannot open the audio: {exc}") from exc


def decode_audio(source: Source, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> DecodedAudio:
    """Decode the first audio stream to 16 kHz mono float32.

    A file whose header promises much more audio than decodes is reported as truncated:
    silently analysing a third of a clip would give a face from evidence the user did not
    mean to give.
    """
    with _open(source) as container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise AudioError("the file has no audio stream")
        stream = streams[0]
        ctx = stream.codec_context
        rate = int(ctx.sample_rate or 0)
        channels = int(getattr(ctx, "channels", 0) or (ctx.layout.nb_channels if ctx.layout else 0))
        if rate <= 0:
            raise AudioError("the audio stream has no sample rate (corrupt header)")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        cap = int(max_seconds * SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        n = 0
        capped = False
        decode_error: Exception | None = None
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler keep its own clock (broken pts in truncated files)
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    n += len(arr)
                if n >= cap:
                    capped = True
                    break
            if not capped:
                for out in resampler.resample(None):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    n += len(arr)
        except (av.error.FFmpegError, ValueError) as exc:  # corrupt data mid-stream
            decode_error = exc
        declared = _declared_seconds(container, stream)
    pcm = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if capped:
        pcm = pcm[:cap]
    got = len(pcm) / SAMPLE_RATE
    if decode_error is not None and got < 0.1:
        raise AudioError(f"the audio data is corrupt and nothing could be decoded ({decode_error})")
    if not capped and declared is not None and declared > 1.0 and got < 0.9 * declared:
        raise AudioError(f"the file is truncated: its header declares {declared:.1f} s of audio but only {got:.1f} s decodes")
    if decode_error is not None:
        raise AudioError(f"the audio data is corrupt after {got:.1f} s ({decode_error})")
    if len(pcm) == 0:
        raise AudioError("the file contains no audio samples")
    if not np.all(np.isfinite(pcm)):
        raise AudioError("the audio contains invalid (NaN/inf) samples")
    return DecodedAudio(pcm=pcm, source_rate=rate, source_channels=channels, codec=ctx.name or "?", truncated_at_cap=capped)


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None
