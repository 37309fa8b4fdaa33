"""Where compiled artefacts (ONNX exports, TensorRT engines, timing caches) live, and how
they are named.

Engines are tied to the exact model bytes, the TensorRT version and the GPU architecture,
so the file name carries all three: a stale engine is never loaded, it simply misses.
Writes go through a temp file + ``os.replace`` so a crash (or two processes building the
same engine at once) can never leave a truncated file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

ENV_CACHE_DIR = "S2F_CACHE_DIR"
APP_NAME = "speech2face"
_KEY_FORMAT = 1  # bump when the key's meaning changes so old files stop matching
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def cache_root() -> Path:
    """The per-user cache directory (not created here: callers create what they use).

    ``S2F_CACHE_DIR`` wins so CI, containers and tests can point at scratch space; otherwise
    the platform's user cache dir keeps multi-hundred-MB engines out of the repo and home.
    """
    override = os.environ.get(ENV_CACHE_DIR, "").strip()
    if override:
        return Path(override).expanduser()
    try:
        import platformdirs
    except ImportError:  # platformdirs is tiny but optional: fall back to the XDG convention
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
        return Path(base).expanduser() / APP_NAME
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def file_sha256(path: Path | str, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed so large exported models need no extra memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cc_str(compute_capability: tuple[int, int] | str) -> str:
    if isinstance(compute_capability, str):
        return compute_capability.replace(".", "")
    return "".join(str(int(part)) for part in compute_capability)


def engine_key(
    onnx_sha: str,
    trt_version: str,
    compute_capability: tuple[int, int] | str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A file-name-safe key that changes whenever anything that shapes the engine changes.

    The readable prefix lets a human see which model/TensorRT/GPU a file belongs to; the
    digest covers the full sha and every ``extra`` setting (fp16, profile shapes, ...) with
    sorted keys, so dict ordering never causes a spurious rebuild.
    """
    payload = json.dumps(
        {
            "format": _KEY_FORMAT,
            "onnx_sha256": onnx_sha,
            "tensorrt": trt_version,
            "sm": _cc_str(compute_capability),
            "extra": dict(extra or {}),
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    prefix = f"{onnx_sha[:12]}-trt{trt_version}-sm{_cc_str(compute_capability)}"
    return f"{_UNSAFE.sub('_', prefix)}-{digest}"


def atomic_write_bytes(path: Path | str, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` so readers see either the old file or the complete new one.

    The temp file sits in the destination directory because ``os.replace`` is only atomic
    within one filesystem; it is fsynced first so a power loss cannot publish an empty file.
    Accepts any buffer (e.g. TensorRT's ``IHostMemory``) without copying it to ``bytes``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(memoryview(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path
