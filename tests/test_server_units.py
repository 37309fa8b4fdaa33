"""Small pure pieces of the server: config, ICE filtering, admission, batching, VP8 settings.

(The mouth envelope and blinks moved to engines/; their tests are in test_animator.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from server.admission import Admission, Full
from server.config import from_sources, parse_ice_servers
from server.ice import keep_loopback_candidates


def test_config_flags_over_env_over_defaults():
    cfg = from_sources({}, environ={})
    assert (cfg.host, cfg.port, cfg.size, cfg.fps, cfg.privacy, cfg.backend) == ("127.0.0.1", 8080, 256, 15.0, "stable", "onnx")
    assert cfg.is_loopback and cfg.ice_servers == ()
    cfg = from_sources(
        {"port": 9000},
        environ={
            "S2F_PORT": "7000",
            "S2F_SESSION_BUDGET": "3",
            "S2F_HOST": "0.0.0.0",
            "S2F_ICE_SERVERS": "stun:stun.example:3478,turn:u:p@turn.example:3478",
        },
    )
    assert cfg.port == 9000 and cfg.session_budget == 3 and not cfg.is_loopback
    assert cfg.ice_servers[1].username == "u" and cfg.ice_servers[1].urls == ["turn:turn.example:3478"]
    assert parse_ice_servers('[{"urls": "stun:a:1"}]')[0].urls == ["stun:a:1"]
    with pytest.raises(ValueError):
        from_sources({"size": 300}, environ={})


def test_loopback_filter_drops_lan_and_mdns_candidates():
    sdp = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host\r\n"
        "a=candidate:2 1 udp 2122260223 192.168.1.5 5001 typ host\r\n"
        "a=candidate:3 1 udp 2122260223 abcd-1234.local 5002 typ host\r\n"
        "a=candidate:4 1 udp 2122260223 ::1 5003 typ host\r\n"
    )
    out = keep_loopback_candidates(sdp)
    assert "127.0.0.1" in out and "::1" in out and "192.168" not in out and ".local" not in out


def test_admission_budget():
    a = Admission(2)
    a.acquire("a")
    a.acquire("b")
    with pytest.raises(Full):
        a.acquire("c")
    a.release("a")
    a.acquire("c")
    assert a.in_use == 2


@pytest.mark.asyncio
async def test_model_batcher_batches_callers_and_isolates_failures(onnx_engine, speech_wav):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from server.batcher import ModelBatcher
    from tests.server_helpers import read_wav_16k

    pcm = read_wav_16k(speech_wav["male"])
    executor = ThreadPoolExecutor(max_workers=1)
    batcher = ModelBatcher(onnx_engine, executor)
    batcher.start()
    try:
        pipes = [onnx_engine.pipeline() for _ in range(3)]
        pipes[2].finish()  # a broken caller: pushing into it raises
        results = await asyncio.gather(*(batcher.push(p, pcm) for p in pipes), return_exceptions=True)
        assert isinstance(results[2], RuntimeError)
        assert results[0].version == results[1].version > 0
        assert batcher.batches == 1 and batcher.items == 3  # one batch served all three
    finally:
        await batcher.close()
        executor.shutdown(wait=True)


def test_avatar_vp8_keeps_picture_quality_and_is_wired_in():
    """The tuned encoder (denoiser off: there is no camera noise) must not cost quality.

    Its CPU saving is a benchmark figure (README), not a timed test."""
    import fractions

    import av
    from aiortc import rtcrtpsender
    from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from engines.face import FaceParams
    from engines.render import AvatarRenderer
    from server.vp8 import AvatarVp8Encoder, use_avatar_vp8

    renderer = AvatarRenderer(256)
    renderer.set_params(FaceParams.neutral().replace(femininity=0.9))
    frames = [renderer.frame(abs(np.sin(i / 3)), 1.0 if i % 20 < 2 else 0.0) for i in range(40)]

    sizes: dict[str, int] = {}

    def mean_psnr(encoder: Vp8Encoder) -> float:
        decoder, scores = Vp8Decoder(), []
        name = type(encoder).__name__
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i * 6000, fractions.Fraction(1, 90000)
            payloads, ts = encoder.encode(frame)
            data = b"".join(vp8_depayload(p) for p in payloads)
            sizes[name] = sizes.get(name, 0) + len(data)
            for out in decoder.decode(JitterFrame(data=data, timestamp=ts)):
                err = np.mean((out.to_ndarray(format="rgb24").astype(float) - rgb.astype(float)) ** 2)
                scores.append(10 * np.log10(255**2 / max(err, 1e-9)))
        assert len(scores) == len(frames)
        return float(np.mean(scores))

    ours, camera = mean_psnr(AvatarVp8Encoder()), mean_psnr(Vp8Encoder())
    assert sizes["AvatarVp8Encoder"] != sizes["Vp8Encoder"]  # our settings are the ones in use
    assert ours > 32.0 and ours > camera - 0.5, (ours, camera)

    use_avatar_vp8()
    use_avatar_vp8()  # idempotent
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    assert isinstance(rtcrtpsender.get_encoder(vp8), AvatarVp8Encoder)
    assert not isinstance(rtcrtpsender.get_encoder(opus), Vp8Encoder)


def test_log_filter_keeps_client_caused_errors_to_one_debug_line():
    """A DTLS send racing a peer's hang-up (seen at 50 callers) and a reset connection are the
    peer's doing: one DEBUG line, no traceback. Our own bugs keep theirs."""
    import logging
    import sys

    from OpenSSL.SSL import Error as SSLError

    from server.errors import ClientErrorLogFilter

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.LogRecord(
                "asyncio", logging.ERROR, __file__, 1, "Task exception was never retrieved", (), sys.exc_info()
            )

    for exc in (SSLError([("SSL routines", "", "bad write retry")]), ConnectionResetError("gone")):
        r = record(exc)
        ClientErrorLogFilter().filter(r)
        assert (r.levelno, r.exc_info) == (logging.DEBUG, None), exc
    bug = record(KeyError("ours"))
    ClientErrorLogFilter().filter(bug)
    assert bug.levelno == logging.ERROR and bug.exc_info is not None


def test_video_frames_read_the_animators_picture_in_place():
    """The track wraps the animator's cached yuv420p picture instead of copying it per frame:
    the frame shares its memory and the encoder makes the same bytes of it as of a copy."""
    import fractions

    import av
    from aiortc.codecs.vpx import vp8_depayload

    from server.video import yuv_frame
    from server.vp8 import AvatarVp8Encoder

    img = (np.arange(384 * 256) % 251).astype(np.uint8).reshape(384, 256)
    img.setflags(write=False)  # what the animator hands out
    frame = yuv_frame(img)
    assert (frame.width, frame.height, frame.format.name) == (256, 256, "yuv420p")
    assert np.array_equal(frame.to_ndarray(), img)
    assert np.shares_memory(np.frombuffer(frame.planes[0], np.uint8), img)
    out = []
    for f in (frame, av.VideoFrame.from_ndarray(img, format="yuv420p")):
        f.pts, f.time_base = 0, fractions.Fraction(1, 90000)
        out.append(b"".join(vp8_depayload(p) for p in AvatarVp8Encoder().encode(f)[0]))
    assert out[0] == out[1] and out[0]  # the payload descriptors differ: a random picture id
    strided = np.zeros((384, 512), np.uint8)[:, ::2]  # not contiguous: copied, still right
    assert np.array_equal(yuv_frame(strided).to_ndarray(), strided)
