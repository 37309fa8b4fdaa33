"""Where the two networks run: torch (reference), ONNX Runtime on CPU (default), TensorRT.

Every backend exposes the same two calls on numpy arrays, so the pipeline never knows which
one it drives and parity tests compare them directly. The ONNX graphs are exported from the
torch modules on first use and cached under the user cache dir, keyed by the weights' and
the exporting code's hashes, so an upgrade never runs a stale graph.
"""

from __future__ import annotations

import hashlib
import threading
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from . import decoder as decoder_mod
from . import face as face_mod
from . import profile as profile_mod
from . import traits as traits_mod
from .choices import BACKENDS
from .decoder import N_CODES, FaceDecoder
from .encoder import EMBEDDING_SIZE, load_encoder, weights_sha256
from .engine_cache import atomic_write_bytes, cache_root
from .face import N_PARAMS
from .identity import STATS_PATH
from .mel import N_MELS
from .profile import N_FEATURES
from .traits import TRAITS_PATH, load_traits

DECODER_INPUTS = ("embedding", "features", "basis", "center", "code_scale", "override_values", "override_mask")
DECODER_OUTPUTS = ("params", "p_female", "age_probs", "confidence")
OPSET = 17


class Backend(Protocol):
    name: str
    max_batch: int | None  # the most partials one embed() accepts (None: any)

    def embed(self, mels: np.ndarray) -> np.ndarray:
        """(B, T, 40) float32 power mels → (B, 256) L2-normalised embeddings."""

    def decode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """DECODER_INPUTS → DECODER_OUTPUTS."""


class TorchBackend:
    name = "torch"
    max_batch: int | None = None

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.encoder = load_encoder()
        self.decoder = make_decoder()
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads

    def embed(self, mels: np.ndarray) -> np.ndarray:
        with self._lock, torch.inference_mode():
            return self.encoder(torch.from_numpy(np.ascontiguousarray(mels, np.float32))).numpy()

    def decode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock, torch.inference_mode():
            outs = self.decoder(*(torch.from_numpy(np.ascontiguousarray(feeds[k], np.float32)) for k in DECODER_INPUTS))
        return {k: v.numpy() for k, v in zip(DECODER_OUTPUTS, outs)}


# ---------------------------------------------------------------- ONNX export (cached)
def make_decoder() -> FaceDecoder:
    return FaceDecoder(load_traits()).eval()


def _code_sha() -> str:
    h = hashlib.sha256()
    for mod in (decoder_mod, face_mod, profile_mod, traits_mod):
        h.update(Path(str(mod.__file__)).read_bytes())
    for constants in (STATS_PATH, TRAITS_PATH):
        if constants.exists():
            h.update(constants.read_bytes())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:16]


def decoder_example_inputs(batch: int = 1) -> dict[str, np.ndarray]:
    return {
        "embedding": np.full((batch, EMBEDDING_SIZE), EMBEDDING_SIZE**-0.5, np.float32),
        "features": np.zeros((batch, N_FEATURES), np.float32),
        "basis": np.zeros((EMBEDDING_SIZE, N_CODES), np.float32),
        "center": np.zeros(EMBEDDING_SIZE, np.float32),
        "code_scale": np.ones(N_CODES, np.float32),
        "override_values": np.zeros((batch, N_PARAMS), np.float32),
        "override_mask": np.zeros((batch, N_PARAMS), np.float32),
    }


_export_lock = threading.Lock()


def onnx_paths(progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Export (once) and return {'encoder': path, 'decoder': path}."""
    out_dir = cache_root() / "onnx"
    enc = out_dir / f"ge2e-{weights_sha256()[:16]}-{torch.__version__.split('+')[0]}.onnx"
    dec = out_dir / f"face-decoder-{_code_sha()}.onnx"
    with _export_lock:
        if not enc.exists():
            if progress:
                progress("exporting the voice encoder to ONNX (once)…")
            _export(
                load_encoder(),
                (torch.zeros(1, 160, N_MELS),),
                enc,
                ["mels"],
                ["embedding"],
                {"mels": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
            )
        if not dec.exists():
            if progress:
                progress("exporting the face decoder to ONNX (once)…")
            ex = decoder_example_inputs(2)
            dyn = {k: {0: "batch"} for k in ("embedding", "features", "override_values", "override_mask", *DECODER_OUTPUTS)}
            _export(
                make_decoder(),
                tuple(torch.from_numpy(ex[k]) for k in DECODER_INPUTS),
                dec,
                list(DECODER_INPUTS),
                list(DECODER_OUTPUTS),
                dyn,
            )
    return {"encoder": enc, "decoder": dec}


def _export(model: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    import io

    buf = io.BytesIO()
    with torch.inference_mode():
        torch.onnx.export(
            model,
            args,
            buf,  # type: ignore[arg-type]  # torch's hint omits file objects, which export accepts
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------- ONNX Runtime
class OrtBackend:
    name = "onnx"
    max_batch: int | None = None

    def __init__(self, provider: str = "CPUExecutionProvider", progress: Callable[[str], None] | None = None) -> None:
        import onnxruntime as ort

        paths = onnx_paths(progress)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # a busy 2-core box collapses with more (see ARCHITECTURE pitfalls)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's arena keeps the largest batch's buffers for ever (measured: +17 MiB after one
        # wave of 10 batched callers, never returned); without it memory goes back to the
        # baseline when callers leave, for ~3 % more encoder time
        opts.enable_cpu_mem_arena = False
        self.encoder = ort.InferenceSession(str(paths["encoder"]), opts, providers=[provider])
        self.decoder = ort.InferenceSession(str(paths["decoder"]), opts, providers=[provider])
        for sess in (self.encoder, self.decoder):
            got = sess.get_providers()[0]
            if got != provider:
                raise RuntimeError(f"ONNX Runtime gave provider {got} instead of {provider}")
        self.provider = provider

    def embed(self, mels: np.ndarray) -> np.ndarray:
        return self.encoder.run(["embedding"], {"mels": np.ascontiguousarray(mels, np.float32)})[0]

    def decode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.decoder.run(list(DECODER_OUTPUTS), {k: np.ascontiguousarray(feeds[k], np.float32) for k in DECODER_INPUTS})
        return dict(zip(DECODER_OUTPUTS, outs))


# ---------------------------------------------------------------- TensorRT
ENCODER_PROFILE = {"mels": ((1, 16, N_MELS), (1, 160, N_MELS), (32, 160, N_MELS))}


def decoder_profiles() -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    ex = decoder_example_inputs(1)
    prof = {}
    for k, v in ex.items():
        shape = tuple(v.shape)
        if k in ("embedding", "features", "override_values", "override_mask"):
            prof[k] = ((1, *shape[1:]), (1, *shape[1:]), (64, *shape[1:]))
        else:
            prof[k] = (shape, shape, shape)
    return prof


class TensorRTBackend:
    name = "tensorrt"
    max_batch: int | None = ENCODER_PROFILE["mels"][2][0]  # the engine rejects a batch over its profile's max

    def __init__(self, fp16: bool = False, progress: Callable[[str], None] | None = None) -> None:
        from .tensorrt_backend import TensorRTSession

        paths = onnx_paths(progress)
        self.encoder = TensorRTSession(paths["encoder"], ENCODER_PROFILE, fp16=fp16, progress=progress)
        self.decoder = TensorRTSession(paths["decoder"], decoder_profiles(), fp16=fp16, progress=progress)

    def embed(self, mels: np.ndarray) -> np.ndarray:
        return self.encoder.run({"mels": np.ascontiguousarray(mels, np.float32)})["embedding"]

    def decode(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.decoder.run({k: np.ascontiguousarray(feeds[k], np.float32) for k in DECODER_INPUTS})
        return {k: outs[k] for k in DECODER_OUTPUTS}


def embed_in_batches(backend: Backend, mels: np.ndarray) -> np.ndarray:
    """``backend.embed`` over any number of partials, split at the backend's maximum batch.

    The server joins up to 16 callers with several partials each; a backed-up batch can
    exceed what a TensorRT profile allows (32), which would fail every caller in it.
    """
    cap = backend.max_batch or len(mels)
    if len(mels) <= cap:
        return backend.embed(mels)
    return np.concatenate([backend.embed(mels[i : i + cap]) for i in range(0, len(mels), cap)])


def limit_blas_threads() -> None:
    """Pin numpy's BLAS to one thread, whatever was imported first.

    The mel projection is a small matmul; with OpenBLAS's default pool on a 2-core box its
    idle worker spins and doubles the process's CPU for no speed-up (measured: 2.1 s of CPU
    for 1.07 s of wall time over 22 s of speech, 0.87 s with one thread). Environment
    variables only work before numpy loads, so threadpoolctl sets the live pools.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@lru_cache(maxsize=4)
def make_backend(name: str = "onnx") -> Backend:
    """One shared, thread-safe backend per process and name (ORT sessions allow concurrent run())."""
    limit_blas_threads()
    if name == "onnx":
        return OrtBackend()
    if name == "torch":
        return TorchBackend()
    if name == "tensorrt":
        return TensorRTBackend()
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
