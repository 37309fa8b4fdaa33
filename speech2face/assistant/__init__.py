"""Assistant avatars: a voice agent's TTS in, a lip-synced face out (framework-neutral).

The LiveKit Agents and Pipecat plugins and the ``/v1/assistant`` websocket all sit on
``AssistantAvatar``; they only move its frames, audio and events.
"""

from .face import face_from_seed, face_params
from .generator import AssistantAvatar, AudioOut, FaceEvent, SegmentEnd, VideoOut

__all__ = ["AssistantAvatar", "AudioOut", "FaceEvent", "SegmentEnd", "VideoOut", "face_from_seed", "face_params"]
