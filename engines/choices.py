"""What a caller or an operator chooses from, and the engine's one audio rate: defined once.

Free of imports so that the server's configuration and the CLI's argument parser (which must
not load torch, Skia or ONNX Runtime just to validate a flag) share them with the engine.
"""

SAMPLE_RATE = 16_000  # Hz: everything after decoding is 16 kHz mono float32
SIZES = (256, 384, 512)  # avatar edge in px, for the call's video and for pictures
PRIVACY_MODES = ("stable", "room", "random")  # see engines/identity.py
BACKENDS = ("onnx", "torch", "tensorrt")  # see engines/backends.py
MAX_SPEECH_SECONDS = 120.0  # speech a face is refined from; beyond it the face no longer changes
