"""The engine never hands a backend a batch larger than it accepts (TensorRT profiles cap it)."""

from __future__ import annotations

import numpy as np

from engines.pipeline import AvatarEngine


class CappedBackend:
    """The real ONNX Runtime backend, refusing batches over ``max_batch`` as a TensorRT engine does."""

    def __init__(self, inner, max_batch: int) -> None:
        self.inner, self.max_batch, self.name = inner, max_batch, "capped"
        self.batches: list[int] = []

    def embed(self, mels: np.ndarray) -> np.ndarray:
        if len(mels) > self.max_batch:
            raise ValueError(f"batch {len(mels)} over the profile's max {self.max_batch}")
        self.batches.append(len(mels))
        return self.inner.embed(mels)

    def decode(self, feeds):
        return self.inner.decode(feeds)


def test_push_many_splits_batches_at_the_backend_maximum(onnx_engine, speech_wav):
    from tests.server_helpers import read_wav_16k

    speech = read_wav_16k(speech_wav["female"])[: 16_000 * 5]
    capped = AvatarEngine.__new__(AvatarEngine)
    capped.__dict__.update(onnx_engine.__dict__)
    capped.backend = CappedBackend(onnx_engine.backend, max_batch=4)
    pipes = [capped.pipeline() for _ in range(3)]
    ref = [onnx_engine.pipeline() for _ in range(3)]
    out = capped.push_many([(p, speech) for p in pipes])  # ~5 partials each: 15 in one push
    want = onnx_engine.push_many([(p, speech) for p in ref])
    assert not any(isinstance(u, Exception) for u in out), out
    assert max(capped.backend.batches) == 4 and sum(capped.backend.batches) >= 12
    for got, exp in zip(out, want):
        assert np.allclose(got.params.vector, exp.params.vector, atol=1e-5)
