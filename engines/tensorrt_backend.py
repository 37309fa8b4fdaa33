"""TensorRT inference backend: ONNX -> cached serialized engine -> ``run(feeds)``.

Why it is shaped this way:
- ``tensorrt`` (NVIDIA's wheels) and a CUDA build of torch exist only on GPU machines, so
  both are imported lazily; importing this module is always safe and every "cannot run
  here" case surfaces as one ``TensorRTUnavailable`` whose message names what is missing,
  letting callers fall back to ONNX Runtime with a useful log line.
- Building an engine takes about a minute, so engines are cached on disk under a key of
  (ONNX bytes, TensorRT version, GPU compute capability, precision, profile shapes) and a
  persistent timing cache makes the rare rebuild (new TensorRT, new GPU) faster.
- Inputs have dynamic batch/time axes; TensorRT only accepts shapes inside the
  optimisation profiles the engine was built with, so shapes are checked in Python first
  and a clear ``ValueError`` beats an opaque TensorRT error log.
- torch is the CUDA allocator and stream provider (already a dependency), which avoids a
  cuda-python dependency and its version pinning.

Written against the TensorRT 10.x/11.x Python API (named I/O tensors, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``). TensorRT 11 is strongly typed only (no
``BuilderFlag.FP16``), so ``fp16=True`` is refused there with an explanation.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

import numpy as np

from engines.engine_cache import atomic_write_bytes, cache_root, engine_key

if TYPE_CHECKING:  # pragma: no cover - typing only; tensorrt may be absent at runtime
    import torch

__all__ = [
    "MIN_TENSORRT_MAJOR",
    "Profile",
    "TensorRTSession",
    "TensorRTUnavailable",
    "build_engine",
    "check_profiles_against_inputs",
    "normalize_profiles",
    "tensorrt_status",
]

log = logging.getLogger(__name__)

MIN_TENSORRT_MAJOR = 10
DEFAULT_WORKSPACE_BYTES = 1 << 30  # both models are tiny; 1 GiB leaves the GPU to the rest

Shape = tuple[int, ...]
ProfilesArg = Union[
    Mapping[str, Sequence["Profile"]],  # {profile label: [Profile per dynamic input]}
    Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]],  # {input: (min, opt, max)}
    Mapping[str, "Profile"],  # {input: Profile}
    Sequence["Profile"],  # one optimisation profile
    Sequence[Sequence["Profile"]],  # several optimisation profiles, in engine order
    None,
]


class TensorRTUnavailable(RuntimeError):
    """TensorRT cannot run here; the message says exactly what is missing."""


# --------------------------------------------------------------------------- availability


def _major(version: str) -> int | None:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        return None


def tensorrt_status() -> tuple[bool, str]:
    """(available, explanation) without raising, so CLIs and tests can branch on it.

    Every missing piece is listed at once (package, GPU, version) so a user fixes their
    environment in one go instead of discovering problems one reinstall at a time.
    """
    problems: list[str] = []
    trt_version: str | None = None
    try:
        import tensorrt as trt
    except ImportError:
        problems.append(
            "the `tensorrt` Python package is not installed (NVIDIA's wheels: `pip install tensorrt`, TensorRT >= 10)"
        )
    except Exception as exc:  # e.g. OSError: libnvinfer.so missing or wrong CUDA
        problems.append(f"the `tensorrt` package failed to import ({type(exc).__name__}: {exc})")
    else:
        trt_version = str(getattr(trt, "__version__", "unknown"))
        major = _major(trt_version)
        if major is None or major < MIN_TENSORRT_MAJOR:
            problems.append(
                f"no compatible TensorRT version: {trt_version} is installed but this backend "
                f"needs TensorRT >= {MIN_TENSORRT_MAJOR} (10.x or 11.x API)"
            )

    gpu = ""
    try:
        import torch
    except ImportError:
        problems.append("no CUDA GPU via torch: torch is not installed (it allocates the CUDA buffers)")
    else:
        try:
            if torch.version.cuda is None:
                problems.append(f"no CUDA GPU: torch {torch.__version__} is a CPU-only build (install a CUDA build of torch)")
            elif not torch.cuda.is_available():
                problems.append(
                    "no CUDA GPU: torch sees no CUDA device (torch.cuda.is_available() is False; "
                    "check the NVIDIA driver and CUDA_VISIBLE_DEVICES)"
                )
            else:
                major, minor = torch.cuda.get_device_capability()
                gpu = f"{torch.cuda.get_device_name()} (sm_{major}{minor})"
        except Exception as exc:  # a broken driver raises from inside torch.cuda
            problems.append(f"no CUDA GPU: probing CUDA failed ({type(exc).__name__}: {exc})")

    if problems:
        return False, "TensorRT backend unavailable: " + "; ".join(problems)
    return True, f"TensorRT {trt_version} on {gpu}"


def _require_tensorrt() -> Any:
    """The ``tensorrt`` module, or ``TensorRTUnavailable`` carrying ``tensorrt_status()``'s text."""
    ok, message = tensorrt_status()
    if not ok:
        raise TensorRTUnavailable(message)
    import tensorrt as trt

    return trt


@functools.lru_cache(maxsize=1)
def _logger() -> Any:
    """One process-wide logger: TensorRT expects builder and runtime to share one."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


# --------------------------------------------------------------------------- profiles


def _as_shape(value: Sequence[int], what: str) -> Shape:
    try:
        shape = tuple(int(d) for d in value)
    except TypeError as exc:
        raise TypeError(f"{what} must be a sequence of ints, got {value!r}") from exc
    if any(d < 0 for d in shape):
        raise ValueError(f"{what} must be non-negative, got {shape}")
    return shape


@dataclass(frozen=True)
class Profile:
    """min/opt/max shapes of one dynamic input inside one optimisation profile.

    ``opt`` is what TensorRT tunes kernels for, so set it to the live shape (batch 1, a
    typical window), while ``min``/``max`` bound what the engine accepts at all.
    """

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        lo = _as_shape(self.min, f"profile {self.name!r} min")
        opt = _as_shape(self.opt, f"profile {self.name!r} opt")
        hi = _as_shape(self.max, f"profile {self.name!r} max")
        if not len(lo) == len(opt) == len(hi):
            raise ValueError(f"profile {self.name!r}: min/opt/max ranks differ ({lo}, {opt}, {hi})")
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise ValueError(f"profile {self.name!r}: need min <= opt <= max per dim, got {lo}, {opt}, {hi}")
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "opt", opt)
        object.__setattr__(self, "max", hi)

    def violation(self, shape: Sequence[int]) -> str | None:
        """Why ``shape`` does not fit, or None when it does (non-raising, for profile choice)."""
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(self.min):
            return f"{self.name!r} has rank {len(shape)} {shape}, expected rank {len(self.min)}"
        for axis, (d, lo, hi) in enumerate(zip(shape, self.min, self.max)):
            if not lo <= d <= hi:
                return (
                    f"{self.name!r} shape {shape}: dim {axis} = {d} is outside [{lo}, {hi}] "
                    f"(profile min {self.min}, max {self.max})"
                )
        return None

    def check(self, shape: Sequence[int]) -> None:
        """Raise ``ValueError`` naming the offending dim when ``shape`` is out of range."""
        problem = self.violation(shape)
        if problem:
            raise ValueError(problem)


def _is_shape_triple(value: Any) -> bool:
    return (
        isinstance(value, (tuple, list))
        and len(value) == 3
        and all(isinstance(s, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in s) for s in value)
    )


def _check_unique(group: list[Profile], label: str) -> list[Profile]:
    names = [p.name for p in group]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"optimisation profile {label} lists input(s) {duplicates} more than once")
    return group


def normalize_profiles(profiles: ProfilesArg) -> list[list[Profile]]:
    """Every accepted spelling -> ``[[Profile per input] per optimisation profile]``.

    Callers usually need one profile and write ``{"mels": (min, opt, max)}``; several
    profiles (e.g. a batch-1 live profile and a batch-64 offline one) are
    ``{"live": [Profile(...)], "offline": [Profile(...)]}`` and keep their dict order.
    """
    if profiles is None:
        return []
    if isinstance(profiles, Profile):
        return [[profiles]]
    if isinstance(profiles, Mapping):
        mapping: Mapping[Any, Any] = profiles  # values are one of three spellings, told apart below
        values: list[Any] = list(mapping.values())
        if not values:
            return []
        if all(isinstance(v, Profile) for v in values):
            for key, p in mapping.items():
                if key != p.name:
                    raise ValueError(f"profiles[{key!r}] is a Profile for input {p.name!r}")
            return [_check_unique(list(values), "0")]
        if all(_is_shape_triple(v) for v in values):
            return [[Profile(str(name), *triple) for name, triple in mapping.items()]]
        if all(isinstance(v, (list, tuple)) and v and all(isinstance(p, Profile) for p in v) for v in values):
            return [_check_unique(list(v), repr(k)) for k, v in mapping.items()]
        raise TypeError("profiles must be {input: (min, opt, max)}, {input: Profile} or {profile_label: [Profile, ...]}")
    items: list[Any] = list(profiles)
    if not items:
        return []
    if all(isinstance(p, Profile) for p in items):
        return [_check_unique(items, "0")]
    if all(isinstance(g, (list, tuple)) and all(isinstance(p, Profile) for p in g) for g in items):
        return [_check_unique(list(g), str(i)) for i, g in enumerate(items)]
    raise TypeError(f"unsupported profiles value: {profiles!r}")


def check_profiles_against_inputs(inputs: Mapping[str, Sequence[int]], profiles: list[list[Profile]]) -> None:
    """Fail before the (slow) build when profiles and the network's inputs disagree.

    ``inputs`` maps input name to its declared shape with -1 for dynamic dims. TensorRT
    needs every dynamic input in every profile and static dims pinned to their value;
    its own error for that is a log line and a ``None`` engine.
    """
    dynamic = [n for n, s in inputs.items() if any(int(d) < 0 for d in s)]
    if dynamic and not profiles:
        raise ValueError(
            f"input(s) {dynamic} have dynamic dims {[tuple(inputs[n]) for n in dynamic]}; pass profiles={{name: (min, opt, max)}}"
        )
    for index, group in enumerate(profiles):
        by_name = {p.name: p for p in group}
        unknown = sorted(set(by_name) - set(inputs))
        if unknown:
            raise ValueError(f"profile {index} names unknown input(s) {unknown}; network inputs are {list(inputs)}")
        missing = [n for n in dynamic if n not in by_name]
        if missing:
            raise ValueError(f"profile {index} lacks shapes for dynamic input(s) {missing}")
        for name, p in by_name.items():
            declared = tuple(int(d) for d in inputs[name])
            if len(declared) != len(p.min):
                raise ValueError(f"profile {index}: {name!r} has rank {len(p.min)}, network says {declared}")
            for axis, d in enumerate(declared):
                if d >= 0 and not p.min[axis] == p.max[axis] == d:
                    raise ValueError(
                        f"profile {index}: {name!r} dim {axis} is fixed to {d} in the model but the "
                        f"profile allows [{p.min[axis]}, {p.max[axis]}]"
                    )


# --------------------------------------------------------------------------- build


def _compute_capability() -> tuple[int, int]:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return int(major), int(minor)


def _profiles_for_key(profiles: list[list[Profile]]) -> list[list[list[Any]]]:
    # order of inputs inside a profile is irrelevant; order of profiles is the engine index
    return [[[p.name, list(p.min), list(p.opt), list(p.max)] for p in sorted(group, key=lambda p: p.name)] for group in profiles]


def _load_timing_cache(config: Any, path: Path) -> Any:
    """Attach the on-disk timing cache; a corrupt or foreign one is replaced, never fatal."""
    data = b""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        pass
    cache = None
    try:
        cache = config.create_timing_cache(data)
        if cache is not None and not config.set_timing_cache(cache, ignore_mismatch=False):
            cache = None
    except Exception as exc:
        log.warning("ignoring unusable TensorRT timing cache %s: %s", path, exc)
        cache = None
    if cache is None and data:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine(
    onnx_path: Path | str,
    profiles: ProfilesArg = None,
    *,
    fp16: bool = False,
    cache_dir: Path | str | None = None,
    progress: Callable[[str], None] | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> Path:
    """Return the path of a serialized engine for ``onnx_path``, building it only if needed.

    The cache key covers everything that makes an engine invalid or different, so a hit
    is trusted without re-reading TensorRT; the engine and timing cache are written
    atomically so concurrent builders or a killed build never leave a bad file behind.
    fp32 builds disable TF32 so results stay within 1e-3 of ONNX Runtime.
    """
    onnx_path = Path(onnx_path)
    groups = normalize_profiles(profiles)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    trt = _require_tensorrt()
    report = progress or log.info
    label = onnx_path.stem

    fp16_flag = getattr(trt.BuilderFlag, "FP16", None)
    if fp16 and fp16_flag is None:
        raise TensorRTUnavailable(
            f"no compatible TensorRT version for fp16: TensorRT {trt.__version__} is strongly typed "
            "only (BuilderFlag.FP16 was removed in 11.x); export an fp16 ONNX model or use fp16=False"
        )

    data = onnx_path.read_bytes()
    trt_version = str(trt.__version__)
    cc = _compute_capability()
    key = engine_key(
        hashlib.sha256(data).hexdigest(),
        trt_version,
        cc,
        {"fp16": fp16, "profiles": _profiles_for_key(groups), "workspace": workspace_bytes},
    )
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "tensorrt"
    engine_path = root / f"{key}.engine"
    if engine_path.is_file() and engine_path.stat().st_size > 0:
        report(f"{label} engine up to date ({engine_path.name})")
        return engine_path

    report(f"building {label} engine… this takes ~1 min once")
    started = time.perf_counter()
    logger = _logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data, path=str(onnx_path)):
        errors = "\n".join(f"  {parser.get_error(i)}" for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n{errors}")

    inputs = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        inputs[tensor.name] = tuple(int(d) for d in tensor.shape)
    check_profiles_against_inputs(inputs, groups)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if fp16:
        config.set_flag(fp16_flag)
    else:
        tf32 = getattr(trt.BuilderFlag, "TF32", None)
        if tf32 is not None:
            config.clear_flag(tf32)
    for index, group in enumerate(groups):
        profile = builder.create_optimization_profile()
        for p in group:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        if config.add_optimization_profile(profile) < 0:
            raise ValueError(f"TensorRT rejected optimisation profile {index}: {group}")

    timing_path = root / f"timing-trt{trt_version}-sm{cc[0]}{cc[1]}.cache"
    timing_cache = _load_timing_cache(config, timing_path)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")

    if timing_cache is not None:
        try:
            atomic_write_bytes(timing_path, config.get_timing_cache().serialize())
        except Exception as exc:  # a lost timing cache only slows the next build
            log.warning("could not save TensorRT timing cache %s: %s", timing_path, exc)
    atomic_write_bytes(engine_path, serialized)
    report(f"built {label} engine in {time.perf_counter() - started:.1f} s -> {engine_path}")
    return engine_path


# --------------------------------------------------------------------------- session


def _dtype_tables() -> tuple[dict[Any, "torch.dtype"], dict["torch.dtype", np.dtype]]:
    import tensorrt as trt
    import torch

    by_name = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
    }
    trt_to_torch = {getattr(trt.DataType, n): t for n, t in by_name.items() if hasattr(trt.DataType, n)}
    torch_to_np: dict[Any, np.dtype[Any]] = {
        torch.float32: np.dtype(np.float32),
        torch.float16: np.dtype(np.float16),
        torch.bfloat16: np.dtype(np.float32),  # numpy has no bf16: feed/return float32
        torch.int8: np.dtype(np.int8),
        torch.uint8: np.dtype(np.uint8),
        torch.int32: np.dtype(np.int32),
        torch.int64: np.dtype(np.int64),
        torch.bool: np.dtype(np.bool_),
    }
    return trt_to_torch, torch_to_np


class TensorRTSession:
    """Same contract as ``OrtSession``: ``run(feeds) -> {output: ndarray}``.

    One execution context and one CUDA stream per session; ``run`` is serialised with a
    lock because a TensorRT context is not re-entrant. Device buffers grow to the largest
    shape seen and are reused, so steady-state calls allocate nothing on the GPU.
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: Path | str,
        profiles: ProfilesArg = None,
        *,
        fp16: bool = False,
        cache_dir: Path | str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.onnx_path = Path(onnx_path)
        groups = normalize_profiles(profiles)
        if not self.onnx_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.onnx_path}")
        trt = _require_tensorrt()
        import torch

        self._trt = trt
        self._torch = torch
        self._device = torch.device("cuda", torch.cuda.current_device())
        self._stream = torch.cuda.Stream(device=self._device)  # also initialises the CUDA context
        self._lock = threading.Lock()
        build = functools.partial(build_engine, self.onnx_path, groups, fp16=fp16, cache_dir=cache_dir, progress=progress)

        self._runtime = trt.Runtime(_logger())
        self.engine_path = build()
        engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:  # corrupt file or a TensorRT patch release that cannot read it: rebuild once
            log.warning("could not deserialize %s; rebuilding", self.engine_path)
            self.engine_path.unlink(missing_ok=True)
            self.engine_path = build()
            engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is None:
                raise RuntimeError(f"TensorRT could not deserialize freshly built engine {self.engine_path}")
        self._engine = engine
        context = engine.create_execution_context()
        if context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        self._context = context

        trt_to_torch, torch_to_np = _dtype_tables()
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self._torch_dtypes: dict[str, torch.dtype] = {}
        self._np_dtypes: dict[str, np.dtype] = {}
        for i in range(engine.num_io_tensors):
            tensor = engine.get_tensor_name(i)
            dtype = engine.get_tensor_dtype(tensor)
            if dtype not in trt_to_torch:
                raise RuntimeError(f"tensor {tensor!r} has unsupported TensorRT dtype {dtype}")
            location = getattr(engine, "get_tensor_location", None)
            if location is not None and location(tensor) == trt.TensorLocation.HOST:
                raise RuntimeError(f"tensor {tensor!r} is a host shape tensor; not supported by this backend")
            self._torch_dtypes[tensor] = trt_to_torch[dtype]
            self._np_dtypes[tensor] = torch_to_np[trt_to_torch[dtype]]
            if engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT:
                self.input_names.append(tensor)
            else:
                self.output_names.append(tensor)

        # the engine's own profile table is authoritative (it is what TensorRT enforces)
        self._profiles: list[dict[str, Profile]] = []
        for k in range(max(1, engine.num_optimization_profiles)):
            table = {}
            for tensor in self.input_names:
                declared = tuple(int(d) for d in engine.get_tensor_shape(tensor))
                if any(d < 0 for d in declared):
                    lo, opt, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(tensor, k))
                    table[tensor] = Profile(tensor, lo, opt, hi)
                else:
                    table[tensor] = Profile(tensor, declared, declared, declared)
            self._profiles.append(table)
        self._active_profile = 0
        self._buffers: dict[str, torch.Tensor] = {}

    @property
    def profiles(self) -> list[dict[str, Profile]]:
        """Accepted shapes per optimisation profile, as read back from the engine."""
        return [dict(t) for t in self._profiles]

    def __repr__(self) -> str:
        return f"TensorRTSession({self.onnx_path.name!r}, engine={self.engine_path.name!r})"

    # -- helpers -------------------------------------------------------------------------

    def _prepare(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        unknown = sorted(set(feeds) - set(self.input_names))
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; {self.onnx_path.name} takes {self.input_names}")
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"missing input(s) {missing}; {self.onnx_path.name} takes {self.input_names}")
        arrays = {}
        for tensor in self.input_names:
            arr = np.asarray(feeds[tensor])
            want = self._np_dtypes[tensor]
            if arr.dtype != want:
                if not np.can_cast(arr.dtype, want, casting="same_kind"):
                    raise ValueError(f"input {tensor!r} has dtype {arr.dtype}; the engine expects {want}")
                arr = arr.astype(want)
            if not arr.flags.c_contiguous or not arr.flags.writeable:
                arr = np.array(arr, order="C", copy=True)  # torch.from_numpy needs both
            arrays[tensor] = arr
        return arrays

    def _select_profile(self, shapes: Mapping[str, Shape]) -> int:
        """The active profile if the shapes fit (switching costs a sync), else the first that does."""
        order = [self._active_profile] + [k for k in range(len(self._profiles)) if k != self._active_profile]
        reasons = []
        for k in order:
            problems = [p for n, s in shapes.items() if (p := self._profiles[k][n].violation(s))]
            if not problems:
                return k
            reasons.append(f"profile {k}: " + "; ".join(problems))
        raise ValueError(
            f"input shapes {dict(shapes)} are outside every TensorRT optimisation profile of "
            f"{self.onnx_path.name} ({' | '.join(reasons)}); rebuild with wider profiles or split the input"
        )

    def _device_view(self, tensor: str, shape: Shape) -> "torch.Tensor":
        count = math.prod(shape)
        buf = self._buffers.get(tensor)
        if buf is None or buf.numel() < max(count, 1):
            buf = self._torch.empty(max(count, 1), dtype=self._torch_dtypes[tensor], device=self._device)
            self._buffers[tensor] = buf
        return buf[:count].view(shape)

    # -- public --------------------------------------------------------------------------

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run one inference; shapes are validated against the engine's profiles first."""
        arrays = self._prepare(feeds)
        torch = self._torch
        with self._lock:
            if self._context is None:
                raise RuntimeError("TensorRTSession is closed")
            k = self._select_profile({n: tuple(a.shape) for n, a in arrays.items()})
            handle = self._stream.cuda_stream
            with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
                if k != self._active_profile:
                    if not self._context.set_optimization_profile_async(k, handle):
                        raise RuntimeError(f"TensorRT could not switch to optimisation profile {k}")
                    self._active_profile = k
                for tensor, arr in arrays.items():
                    if not self._context.set_input_shape(tensor, tuple(arr.shape)):
                        raise ValueError(f"TensorRT rejected shape {arr.shape} for input {tensor!r}")
                    view = self._device_view(tensor, tuple(arr.shape))
                    view.copy_(torch.from_numpy(arr))
                    self._context.set_tensor_address(tensor, view.data_ptr())
                outputs = {}
                for tensor in self.output_names:
                    shape = tuple(int(d) for d in self._context.get_tensor_shape(tensor))
                    if any(d < 0 for d in shape):
                        raise RuntimeError(f"output {tensor!r} has data-dependent shape {shape}; unsupported")
                    view = self._device_view(tensor, shape)
                    self._context.set_tensor_address(tensor, view.data_ptr())
                    outputs[tensor] = view
                if not self._context.execute_async_v3(handle):
                    raise RuntimeError(f"TensorRT execution failed for {self.onnx_path.name} (see log)")
                # .cpu() copies on the current (our) stream and waits for it
                result = {n: (v.float() if v.dtype == torch.bfloat16 else v).cpu().numpy() for n, v in outputs.items()}
            self._stream.synchronize()
        return result

    def close(self) -> None:
        """Free GPU memory now; the context must go before the engine, the engine before the runtime."""
        with self._lock:
            self._buffers.clear()
            self._context = None
            self._engine = None
            self._runtime = None

    def __enter__(self) -> "TensorRTSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
