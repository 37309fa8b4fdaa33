"""TensorRT backend tests.

The first half runs everywhere (no GPU, no tensorrt): availability reporting, cache keys,
atomic writes and profile validation. The second half needs a CUDA GPU with TensorRT >= 10
and is skipped otherwise; it is what proves the backend on a GPU machine.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines import engine_cache, tensorrt_backend
from engines.engine_cache import atomic_write_bytes, cache_root, engine_key, file_sha256
from engines.tensorrt_backend import (
    Profile,
    TensorRTSession,
    TensorRTUnavailable,
    build_engine,
    check_profiles_against_inputs,
    normalize_profiles,
    tensorrt_status,
)

TRT_OK, TRT_WHY = tensorrt_status()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=f"needs a CUDA GPU + TensorRT: {TRT_WHY}")

IN_DIM, HIDDEN, OUT_DIM = 8, 16, 4
PROFILE = {"mels": ((1, 5, IN_DIM), (4, 50, IN_DIM), (16, 100, IN_DIM))}


def _export_tiny_lstm(path: Path) -> Path:
    """A GE2E-like LSTM + Linear with dynamic batch and time axes (CPU-only export)."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(IN_DIM, HIDDEN, num_layers=2, batch_first=True)
            self.proj = torch.nn.Linear(HIDDEN, OUT_DIM)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(mels)
            emb = self.proj(out[:, -1])
            return emb / torch.linalg.norm(emb, dim=1, keepdim=True).clamp_min(1e-6)

    torch.manual_seed(0)
    model = Tiny().eval()
    with warnings.catch_warnings():  # legacy-exporter deprecation + LSTM batch advice (h0 is built from the input)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 10, IN_DIM),),
            str(path),
            input_names=["mels"],
            output_names=["embedding"],
            dynamic_axes={"mels": {0: "batch", 1: "time"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export_tiny_lstm(tmp_path_factory.mktemp("onnx") / "encoder.onnx")


@pytest.fixture
def hide_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import tensorrt` fail even on a machine that has it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


# --------------------------------------------------------------------------- availability


def test_status_never_raises_and_explains() -> None:
    ok, why = tensorrt_status()
    assert isinstance(ok, bool) and why
    if not ok:
        assert why.startswith("TensorRT backend unavailable")


def test_status_names_missing_package(hide_tensorrt: None) -> None:
    ok, why = tensorrt_status()
    assert not ok
    assert "`tensorrt` Python package is not installed" in why
    assert why.startswith("TensorRT backend unavailable: ")


def test_status_names_missing_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, why = tensorrt_status()
    assert not ok
    assert "CUDA GPU" in why


def test_status_names_incompatible_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    ok, why = tensorrt_status()
    assert not ok
    assert "8.6.1" in why and ">= 10" in why


def test_session_raises_unavailable_not_importerror(tiny_onnx: Path, hide_tensorrt: None, tmp_path: Path) -> None:
    expected = tensorrt_status()[1]
    with pytest.raises(TensorRTUnavailable) as info:
        TensorRTSession(tiny_onnx, PROFILE, cache_dir=tmp_path)
    assert str(info.value) == expected
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(TensorRTUnavailable):
        build_engine(tiny_onnx, PROFILE, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir()), "nothing may be written when TensorRT is unavailable"


@pytest.mark.skipif(TRT_OK, reason="only meaningful where TensorRT cannot run")
def test_session_unavailable_here(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(TensorRTUnavailable, match="TensorRT backend unavailable"):
        TensorRTSession(tiny_onnx, PROFILE, cache_dir=tmp_path)


def test_session_missing_onnx_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TensorRTSession(tmp_path / "nope.onnx", PROFILE, cache_dir=tmp_path)


# --------------------------------------------------------------------------- engine cache


def test_engine_key_stable_and_sensitive() -> None:
    sha = hashlib.sha256(b"model").hexdigest()
    base = engine_key(sha, "10.7.0", (8, 9), {"fp16": False, "profiles": [[1, 2]]})
    assert base == engine_key(sha, "10.7.0", (8, 9), {"profiles": [[1, 2]], "fp16": False})
    assert base == engine_key(sha, "10.7.0", "8.9", {"fp16": False, "profiles": [[1, 2]]})
    variants = [
        engine_key(hashlib.sha256(b"model2").hexdigest(), "10.7.0", (8, 9), {"fp16": False, "profiles": [[1, 2]]}),
        engine_key(sha, "10.8.0", (8, 9), {"fp16": False, "profiles": [[1, 2]]}),
        engine_key(sha, "10.7.0", (9, 0), {"fp16": False, "profiles": [[1, 2]]}),
        engine_key(sha, "10.7.0", (8, 9), {"fp16": True, "profiles": [[1, 2]]}),
        engine_key(sha, "10.7.0", (8, 9), {"fp16": False, "profiles": [[1, 3]]}),
    ]
    assert len({base, *variants}) == 1 + len(variants)
    for key in [base, *variants]:
        assert Path(key).name == key and "/" not in key and " " not in key


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    blob = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    assert file_sha256(path) == hashlib.sha256(blob).hexdigest()


def test_atomic_write_creates_dirs_and_accepts_buffers(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "engine.bin"
    atomic_write_bytes(target, memoryview(bytearray(b"abc")))
    assert target.read_bytes() == b"abc"
    atomic_write_bytes(target, b"replaced")
    assert target.read_bytes() == b"replaced"
    assert sorted(p.name for p in target.parent.iterdir()) == ["engine.bin"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_atomic_write_never_leaves_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    target = tmp_path / "engine.bin"
    target.write_bytes(b"old complete engine")

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(engine_cache.os, failing, boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new engine" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old complete engine"
    assert [p.name for p in tmp_path.iterdir()] == ["engine.bin"], "temp file left behind"


def test_atomic_write_fresh_target_absent_after_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "new.engine"
    monkeypatch.setattr(engine_cache.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("nope")))
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"data")
    assert not any(tmp_path.iterdir())


def test_cache_root_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("S2F_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache"
    monkeypatch.setenv("S2F_CACHE_DIR", "~/s2f-cache")
    assert cache_root() == Path("~/s2f-cache").expanduser()


def test_cache_root_default_is_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S2F_CACHE_DIR", raising=False)
    root = cache_root()
    assert root.is_absolute() and "speech2face" in root.parts


# --------------------------------------------------------------------------- profiles


def test_profile_validates_ordering_and_rank() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Profile("mels", (1, 10, 8), (1, 5, 8), (1, 20, 8))
    with pytest.raises(ValueError, match="ranks differ"):
        Profile("mels", (1, 10), (1, 10, 8), (1, 20, 8))
    with pytest.raises(ValueError, match="non-negative"):
        Profile("mels", (-1, 10, 8), (1, 10, 8), (1, 20, 8))


def test_profile_check_names_offending_dim() -> None:
    p = Profile("mels", [1, 5, 8], [4, 50, 8], [16, 100, 8])
    assert p.min == (1, 5, 8)  # normalised to tuples
    p.check((16, 100, 8))
    p.check((1, 5, 8))
    with pytest.raises(ValueError, match=r"dim 0 = 17 is outside \[1, 16\]"):
        p.check((17, 50, 8))
    with pytest.raises(ValueError, match=r"dim 1 = 101"):
        p.check((1, 101, 8))
    with pytest.raises(ValueError, match="rank"):
        p.check((1, 50))


def test_normalize_profiles_spellings() -> None:
    triple = ((1, 5, 8), (4, 50, 8), (16, 100, 8))
    one = normalize_profiles({"mels": triple})
    assert one == [[Profile("mels", *triple)]]
    assert normalize_profiles({"mels": Profile("mels", *triple)}) == one
    assert normalize_profiles([Profile("mels", *triple)]) == one
    assert normalize_profiles(None) == [] and normalize_profiles({}) == []
    live = Profile("mels", (1, 5, 8), (1, 50, 8), (1, 100, 8))
    offline = Profile("mels", (2, 5, 8), (32, 50, 8), (64, 100, 8))
    assert normalize_profiles({"live": [live], "offline": [offline]}) == [[live], [offline]]
    assert normalize_profiles(normalize_profiles({"live": [live], "offline": [offline]})) == [[live], [offline]]
    with pytest.raises(ValueError, match="more than once"):
        normalize_profiles({"live": [live, live]})
    with pytest.raises(TypeError):
        normalize_profiles({"mels": (1, 2, 3)})


def test_profiles_checked_against_network_inputs() -> None:
    inputs = {"mels": (-1, -1, 8)}
    good = normalize_profiles({"mels": ((1, 5, 8), (4, 50, 8), (16, 100, 8))})
    check_profiles_against_inputs(inputs, good)
    check_profiles_against_inputs({"x": (1, 8)}, [])  # static model needs no profile
    with pytest.raises(ValueError, match="dynamic dims"):
        check_profiles_against_inputs(inputs, [])
    with pytest.raises(ValueError, match="fixed to 8"):
        check_profiles_against_inputs(inputs, normalize_profiles({"mels": ((1, 5, 8), (4, 50, 9), (16, 100, 9))}))
    with pytest.raises(ValueError, match="unknown input"):
        check_profiles_against_inputs(inputs, normalize_profiles({"audio": ((1,), (2,), (3,))}))
    with pytest.raises(ValueError, match="rank"):
        check_profiles_against_inputs(inputs, normalize_profiles({"mels": ((1, 5), (4, 50), (16, 100))}))
    with pytest.raises(ValueError, match="lacks shapes"):
        check_profiles_against_inputs({"mels": (-1, -1, 8), "lens": (-1,)}, good)


def test_tiny_model_onnxruntime_reference(tiny_onnx: Path) -> None:
    """The GPU tests compare against ONNX Runtime; make sure that reference itself works here."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    for batch, frames in [(1, 20), (16, 100)]:
        (emb,) = sess.run(None, {"mels": np.random.randn(batch, frames, IN_DIM).astype(np.float32)})
        assert emb.shape == (batch, OUT_DIM)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------- build plumbing (fake TensorRT)


class _FakeTRT:
    """Just enough of the TensorRT 10 builder API to drive build_engine's caching logic on CPU."""

    def __init__(self, version: str = "10.99.0", has_fp16: bool = True, parse_ok: bool = True) -> None:
        self.__version__ = version
        self.builds = 0
        self.flags: list[str] = []
        self.timing_loaded: list[bytes] = []
        self.profiles: list[dict[str, tuple[Any, ...]]] = []
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, severity: int) -> None:
                pass

        class Network:
            num_inputs = 1

            def get_input(self, i: int) -> Any:
                return types.SimpleNamespace(name="mels", shape=(-1, -1, IN_DIM))

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network: Any, logger: Any) -> None:
                pass

            def parse(self, data: bytes, path: str | None = None) -> bool:
                assert data and path
                return parse_ok

            def get_error(self, i: int) -> str:
                return "UNSUPPORTED_NODE: LSTM"

        class Cache:
            def __init__(self, data: bytes) -> None:
                self.data = data

            def serialize(self) -> bytes:
                return b"timing-cache"

        class Config:
            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                assert pool == "WORKSPACE" and size > 0

            def set_flag(self, flag: str) -> None:
                fake.flags.append(f"+{flag}")

            def clear_flag(self, flag: str) -> None:
                fake.flags.append(f"-{flag}")

            def add_optimization_profile(self, profile: Any) -> int:
                fake.profiles.append(profile.shapes)
                return len(fake.profiles) - 1

            def create_timing_cache(self, data: bytes) -> Cache:
                fake.timing_loaded.append(bytes(data))
                self.cache = Cache(data)
                return self.cache

            def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
                assert ignore_mismatch is False
                return True

            def get_timing_cache(self) -> Cache:
                return self.cache

        class OptProfile:
            def __init__(self) -> None:
                self.shapes: dict[str, tuple[Any, ...]] = {}

            def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
                self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

        class Builder:
            def __init__(self, logger: Any) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                assert flags == 0
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> OptProfile:
                return OptProfile()

            def build_serialized_network(self, network: Any, config: Any) -> bytes:
                fake.builds += 1
                return b"ENGINE-%d" % fake.builds

        flags = {"TF32": "TF32", **({"FP16": "FP16"} if has_fp16 else {})}
        self.BuilderFlag = types.SimpleNamespace(**flags)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, Parser


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(**kwargs: Any) -> _FakeTRT:
        fake = _FakeTRT(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake

    monkeypatch.setattr(tensorrt_backend, "tensorrt_status", lambda: (True, "fake TensorRT"))
    monkeypatch.setattr(tensorrt_backend, "_compute_capability", lambda: (8, 9))
    tensorrt_backend._logger.cache_clear()
    yield install
    tensorrt_backend._logger.cache_clear()  # never leak a fake logger into real GPU tests


def test_build_engine_caches_and_reuses(fake_trt: Any, tiny_onnx: Path, tmp_path: Path) -> None:
    fake = fake_trt()
    messages: list[str] = []
    path = build_engine(tiny_onnx, PROFILE, cache_dir=tmp_path, progress=messages.append)
    assert path.parent == tmp_path and path.suffix == ".engine" and path.read_bytes() == b"ENGINE-1"
    assert messages[0] == "building encoder engine… this takes ~1 min once"
    assert fake.builds == 1 and fake.flags == ["-TF32"]
    assert fake.profiles == [{"mels": PROFILE["mels"]}]
    (timing,) = tmp_path.glob("timing-trt10.99.0-sm89.cache")
    assert timing.read_bytes() == b"timing-cache" and fake.timing_loaded == [b""]

    mtime = path.stat().st_mtime_ns
    messages.clear()
    assert build_engine(tiny_onnx, PROFILE, cache_dir=tmp_path, progress=messages.append) == path
    assert fake.builds == 1 and path.stat().st_mtime_ns == mtime
    assert not any("building" in m for m in messages)

    fp16 = build_engine(tiny_onnx, PROFILE, fp16=True, cache_dir=tmp_path)
    assert fp16 != path and fake.builds == 2 and "+FP16" in fake.flags
    assert fake.timing_loaded[-1] == b"timing-cache", "persisted timing cache not reused"
    assert not list(tmp_path.glob(".*.tmp"))


def test_build_engine_key_tracks_onnx_bytes_and_profiles(fake_trt: Any, tiny_onnx: Path, tmp_path: Path) -> None:
    fake_trt()
    first = build_engine(tiny_onnx, PROFILE, cache_dir=tmp_path)
    copy = tmp_path / "renamed.onnx"
    copy.write_bytes(tiny_onnx.read_bytes())
    assert build_engine(copy, PROFILE, cache_dir=tmp_path) == first  # same bytes, same engine
    wider = {"mels": ((1, 5, IN_DIM), (4, 50, IN_DIM), (32, 100, IN_DIM))}
    assert build_engine(tiny_onnx, wider, cache_dir=tmp_path) != first


def test_build_engine_defaults_to_cache_root(
    fake_trt: Any, tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_trt()
    monkeypatch.setenv("S2F_CACHE_DIR", str(tmp_path / "root"))
    assert build_engine(tiny_onnx, PROFILE).parent == tmp_path / "root" / "tensorrt"


def test_build_engine_reports_parser_errors(fake_trt: Any, tiny_onnx: Path, tmp_path: Path) -> None:
    fake_trt(parse_ok=False)
    with pytest.raises(RuntimeError, match="UNSUPPORTED_NODE: LSTM"):
        build_engine(tiny_onnx, PROFILE, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.engine"))


def test_build_engine_checks_profiles_before_building(fake_trt: Any, tiny_onnx: Path, tmp_path: Path) -> None:
    fake = fake_trt()
    with pytest.raises(ValueError, match="dynamic dims"):
        build_engine(tiny_onnx, None, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fixed to 8"):
        build_engine(tiny_onnx, {"mels": ((1, 5, 9), (1, 5, 9), (1, 5, 9))}, cache_dir=tmp_path)
    assert fake.builds == 0


def test_build_engine_fp16_refused_on_strongly_typed_tensorrt(fake_trt: Any, tiny_onnx: Path, tmp_path: Path) -> None:
    fake_trt(version="11.1.0", has_fp16=False)
    with pytest.raises(TensorRTUnavailable, match="strongly typed"):
        build_engine(tiny_onnx, PROFILE, fp16=True, cache_dir=tmp_path)
    assert build_engine(tiny_onnx, PROFILE, cache_dir=tmp_path).name.count("trt11.1.0") == 1


# --------------------------------------------------------------------------- GPU + TensorRT


def _ort_run(onnx_path: Path, mels: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"mels": mels})[0]


@pytest.fixture(scope="module")
def trt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trt-cache")


@pytest.fixture(scope="module")
def trt_session(tiny_onnx: Path, trt_cache: Path) -> TensorRTSession:
    return TensorRTSession(tiny_onnx, PROFILE, cache_dir=trt_cache)


@needs_trt
def test_trt_matches_onnxruntime(trt_session: TensorRTSession, tiny_onnx: Path) -> None:
    assert trt_session.name == "tensorrt"
    assert trt_session.input_names == ["mels"] and trt_session.output_names == ["embedding"]
    rng = np.random.default_rng(0)
    for batch, frames in [(1, 20), (16, 20), (1, 100), (16, 100), (3, 5), (1, 20)]:
        mels = rng.standard_normal((batch, frames, IN_DIM), dtype=np.float32)
        got = trt_session.run({"mels": mels})
        assert set(got) == {"embedding"}
        assert got["embedding"].shape == (batch, OUT_DIM) and got["embedding"].dtype == np.float32
        np.testing.assert_allclose(got["embedding"], _ort_run(tiny_onnx, mels), atol=1e-3, rtol=0)


@needs_trt
def test_trt_casts_float64_and_rejects_bad_feeds(trt_session: TensorRTSession, tiny_onnx: Path) -> None:
    mels = np.random.default_rng(1).standard_normal((2, 30, IN_DIM))  # float64
    got = trt_session.run({"mels": mels})["embedding"]
    np.testing.assert_allclose(got, _ort_run(tiny_onnx, mels.astype(np.float32)), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="missing input"):
        trt_session.run({})
    with pytest.raises(ValueError, match="unknown input"):
        trt_session.run({"mels": mels, "extra": mels})


@needs_trt
@pytest.mark.parametrize(
    "shape",
    [(17, 20, IN_DIM), (1, 101, IN_DIM), (1, 4, IN_DIM), (1, 20, IN_DIM + 1), (20, IN_DIM), (0, 20, IN_DIM)],
)
def test_trt_out_of_profile_raises_value_error(trt_session: TensorRTSession, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="outside every TensorRT optimisation profile"):
        trt_session.run({"mels": np.zeros(shape, np.float32)})
    # the session stays usable afterwards
    assert trt_session.run({"mels": np.zeros((1, 20, IN_DIM), np.float32)})["embedding"].shape == (1, OUT_DIM)


@needs_trt
def test_trt_second_build_reuses_cached_engine(trt_session: TensorRTSession, tiny_onnx: Path, trt_cache: Path) -> None:
    engine_path = trt_session.engine_path
    assert engine_path.parent == trt_cache and engine_path.stat().st_size > 0
    assert list(trt_cache.glob("timing-*.cache")), "timing cache not persisted"
    mtime = engine_path.stat().st_mtime_ns
    messages: list[str] = []
    started = time.perf_counter()
    again = build_engine(tiny_onnx, PROFILE, cache_dir=trt_cache, progress=messages.append)
    assert again == engine_path
    assert time.perf_counter() - started < 5.0
    assert engine_path.stat().st_mtime_ns == mtime
    assert not any("building" in m for m in messages), messages
    # a fresh session deserialises the same file instead of building
    messages.clear()
    second = TensorRTSession(tiny_onnx, PROFILE, cache_dir=trt_cache, progress=messages.append)
    assert second.engine_path == engine_path and not any("building" in m for m in messages)
    # different profile shapes are a different engine
    wider = {"mels": ((1, 5, IN_DIM), (4, 50, IN_DIM), (32, 100, IN_DIM))}
    assert build_engine(tiny_onnx, wider, cache_dir=trt_cache) != engine_path
    assert not list(trt_cache.glob(".*.tmp")), "temp files left in the cache"


@needs_trt
def test_trt_multiple_profiles(tiny_onnx: Path, trt_cache: Path) -> None:
    live = Profile("mels", (1, 5, IN_DIM), (1, 50, IN_DIM), (1, 100, IN_DIM))
    offline = Profile("mels", (2, 5, IN_DIM), (16, 50, IN_DIM), (32, 100, IN_DIM))
    sess = TensorRTSession(tiny_onnx, {"live": [live], "offline": [offline]}, cache_dir=trt_cache)
    assert [t["mels"] for t in sess.profiles] == [live, offline]
    rng = np.random.default_rng(2)
    for batch in (1, 32, 1, 7):
        mels = rng.standard_normal((batch, 40, IN_DIM), dtype=np.float32)
        np.testing.assert_allclose(sess.run({"mels": mels})["embedding"], _ort_run(tiny_onnx, mels), atol=1e-3, rtol=0)
    with pytest.raises(ValueError):
        sess.run({"mels": np.zeros((33, 40, IN_DIM), np.float32)})


@needs_trt
def test_trt_fp16(tiny_onnx: Path, trt_cache: Path) -> None:
    import tensorrt as trt

    if not hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 11: strongly typed only
        with pytest.raises(TensorRTUnavailable, match="fp16"):
            build_engine(tiny_onnx, PROFILE, fp16=True, cache_dir=trt_cache)
        return
    sess = TensorRTSession(tiny_onnx, PROFILE, fp16=True, cache_dir=trt_cache)
    mels = np.random.default_rng(3).standard_normal((4, 60, IN_DIM), dtype=np.float32)
    np.testing.assert_allclose(sess.run({"mels": mels})["embedding"], _ort_run(tiny_onnx, mels), atol=3e-2, rtol=0)
