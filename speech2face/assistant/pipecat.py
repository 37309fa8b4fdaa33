"""Pipecat video service: the bot's TTS audio in, a lip-synced face and the same audio out, in step.

Put it right after the TTS service, the way ``SimliVideoService`` sits:
``[..., tts, Speech2FaceVideoService(seed="acme"), transport.output()]``. It takes the
TTS audio out of the stream, feeds it to :class:`AssistantAvatar` — which is the clock —
and pushes downstream what the avatar paces out: one ``OutputImageRawFrame`` per video
frame (idle frames too, so a live video track never starves) and the same audio as
``TTSAudioRawFrame``s, each frame period's audio next to the picture that shows it. Every
other frame passes through unchanged; ``TTSStoppedFrame`` is held back until its audio has
been played out, so anything downstream that waits for it (aggregators, transcripts) sees
it after the last audio, not before. An ``InterruptionFrame`` drops the queued audio at
once and the mouth closes within one frame period.

Each image carries ``metadata["speech2face"] = {"index", "mouth", "audio_pos"}``:
``audio_pos`` is the position (seconds of audio played since the service started) of the
first sample of the frame period's audio the picture shows, ``None`` while idle — what a consumer needs to check lip-sync.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup

from .generator import AssistantAvatar, AudioOut, FaceEvent, SegmentEnd, VideoOut

END_GRACE_S = 1.0  # on EndFrame, wait for queued speech to play out, then this much more at most


@dataclass
class _Utterance:
    context_id: str | None
    samples: int = 0  # input samples pushed into the avatar
    sample_rate: int = 0
    stopped: TTSStoppedFrame | None = None  # held until the avatar reports the segment's end


class Speech2FaceVideoService(FrameProcessor):
    """A Pipecat ``FrameProcessor`` that gives the bot a face.

    ``face``: ``speech2face analyze --json`` output (or its ``"face"`` part); ``seed``: a look
    seed you own — either gives the same face every session from frame one. ``engine``: an
    ``AvatarEngine`` to refine the face from the TTS voice (frozen after ``freeze_after_s``).
    Event ``on_face_updated(service, update)`` fires on each refinement.
    """

    def __init__(
        self,
        *,
        face: Mapping | None = None,
        seed: str | None = None,
        size: int = 256,
        fps: float = 25.0,
        engine: Any = None,
        freeze_after_s: float = 6.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._avatar_options: dict[str, Any] = dict(
            face=face, seed=seed, size=size, fps=fps, engine=engine, freeze_after_s=freeze_after_s
        )
        # a bad face, seed, size or fps fails here, not when the pipeline starts (the rate comes with setup)
        AssistantAvatar(sample_rate=24_000, face=face, seed=seed, size=size, fps=fps, freeze_after_s=freeze_after_s)
        self._avatar: AssistantAvatar | None = None
        self._pump: asyncio.Task | None = None
        self._utterances: deque[_Utterance] = deque()  # oldest is the one playing
        self._idle = asyncio.Event()  # set while nothing is queued or playing
        self._idle.set()
        self._register_event_handler("on_face_updated")

    @property
    def avatar(self) -> AssistantAvatar | None:
        return self._avatar

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await super().setup(setup)
        # the transport's rate: our audio goes to it unchanged (the avatar resamples the TTS)
        self._avatar = AssistantAvatar(sample_rate=setup.audio_out_sample_rate, **self._avatar_options)
        await self._avatar.prepare()  # the face is rasterised during set-up: the first frame is immediate

    async def cleanup(self) -> None:
        await self._stop()
        await super().cleanup()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)  # downstream must have started before our first picture
            if self._pump is None:
                self._pump = self.create_task(self._run(), name="speech2face-avatar")
        elif isinstance(frame, TTSStartedFrame):
            self._utterances.append(_Utterance(frame.context_id))
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame):
            self._push_audio(frame)
        elif isinstance(frame, TTSStoppedFrame):
            await self._stop_utterance(frame)
        elif isinstance(frame, InterruptionFrame):
            self._interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._drain()
            await self._stop()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._stop()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    # ------------------------------------------------------------------ into the avatar
    def _push_audio(self, frame: TTSAudioRawFrame) -> None:
        if self._avatar is None:
            return
        if not self._utterances or self._utterances[-1].stopped is not None:
            self._utterances.append(_Utterance(frame.context_id))  # a TTS that sends no TTSStartedFrame
        pcm = np.frombuffer(frame.audio, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
        u = self._utterances[-1]
        u.samples += len(pcm)
        u.sample_rate = frame.sample_rate
        self._idle.clear()
        self._avatar.push_audio(pcm, frame.sample_rate)

    async def _stop_utterance(self, frame: TTSStoppedFrame) -> None:
        u = self._utterances[-1] if self._utterances else None
        if u is None or u.stopped is not None or self._avatar is None:
            await self.push_frame(frame)
            return
        if u.samples == 0:  # said nothing: nothing to wait for
            self._utterances.pop()
            if not self._utterances:
                self._idle.set()
            await self.push_frame(frame)
            return
        u.stopped = frame
        self._avatar.end_segment()

    def _interrupt(self) -> None:
        self._utterances.clear()  # their TTSStoppedFrames go too: downstream resets on the interruption
        if self._avatar is not None:
            self._avatar.clear_buffer()
        self._idle.set()

    # ------------------------------------------------------------------ out of the avatar
    async def _run(self) -> None:
        assert self._avatar is not None
        async for item in self._avatar:
            if isinstance(item, VideoOut):
                image = OutputImageRawFrame(image=item.rgb.tobytes(), size=(item.rgb.shape[1], item.rgb.shape[0]), format="RGB")
                image.metadata["speech2face"] = {"index": item.index, "mouth": item.mouth, "audio_pos": item.audio_pos}
                await self.push_frame(image)
            elif isinstance(item, AudioOut):
                context = self._utterances[0].context_id if self._utterances else None
                pcm = np.ascontiguousarray(item.pcm, dtype=np.int16)
                await self.push_frame(TTSAudioRawFrame(pcm.tobytes(), item.sample_rate, 1, context_id=context))
            elif isinstance(item, SegmentEnd):
                await self._segment_ended(item)
            elif isinstance(item, FaceEvent):
                await self._call_event_handler("on_face_updated", item.update)

    async def _segment_ended(self, end: SegmentEnd) -> None:
        if end.interrupted or not self._utterances:
            return  # _interrupt already forgot the utterance
        u = self._utterances.popleft()
        if u.stopped is not None:
            await self.push_frame(u.stopped)
        if not self._utterances:
            self._idle.set()

    async def _drain(self) -> None:
        """On EndFrame: let what was said play out (bounded by its length), then end."""
        pending = sum(u.samples / u.sample_rate for u in self._utterances if u.sample_rate)
        for u in self._utterances:
            if u.stopped is None and u.samples and self._avatar is not None:
                u.stopped = TTSStoppedFrame(context_id=u.context_id)
                self._avatar.end_segment()
        try:
            await asyncio.wait_for(self._idle.wait(), pending + END_GRACE_S)
        except asyncio.TimeoutError:
            pass

    async def _stop(self) -> None:
        if self._pump is not None:
            await self.cancel_task(self._pump)
            self._pump = None
        if self._avatar is not None:
            await self._avatar.aclose()
            self._avatar = None
