"""`speech2face corpus`: real recorded human speech, fetched from Debian packages at run time.

37 labelled adults cannot calibrate or judge a voice model, and recordings may not be copied
into this repository. So the repository holds only a manifest (``real_speech.csv``: source
package, paths inside it, which files, licence, and where each speaker's label comes from —
credits, documentation, a named person) and this module rebuilds the clips on the user's
machine: ``apt-get download`` the package (through the machine's own apt configuration),
unpack only the listed members, decode them with PyAV, and join them into one 16 kHz clip
per speaker under the cache directory. Nothing is written into the repository.

Labels: ``F``/``M`` only where the package documents the speaker (a credit naming a person,
an annotation file, a role whose grammar fixes the gender); ``unknown`` rows (one uncredited
voice per language folder, assumed) are used for identity checks only, never for gender.
The written ``manifest.csv`` has the columns ``speech2face eval`` reads.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MANIFEST = Path(__file__).with_name("real_speech.csv")
SAMPLE_RATE = 16_000
MAX_CLIP_SECONDS = 12.0  # per speaker: bounded work, and the two halves are ~6 s each
GAP_SECONDS = 0.25  # silence between joined files (the VAD drops it)
EVAL_COLUMNS = ("file", "speaker_id", "gender", "age", "source_package", "language", "licence", "label_source")


class CorpusError(RuntimeError):
    """A package could not be fetched or a manifest row matched nothing: said plainly."""


@dataclass(frozen=True)
class ClipSpec:
    clip: str
    package: str  # "deb:NAME"
    members: tuple[str, ...]  # glob patterns inside the package (``**`` spans folders)
    pick: str  # "all" or "every:N" (every N-th file, sorted)
    segments: tuple[tuple[float, float], ...]  # seconds to keep (empty: all)
    speaker_id: str
    gender: str
    age: str
    language: str
    licence: str
    label_source: str

    @property
    def package_name(self) -> str:
        kind, _, name = self.package.partition(":")
        if kind != "deb" or not name:
            raise CorpusError(f"{self.clip}: unsupported package {self.package!r} (deb:NAME)")
        return name


def read_manifest(path: Path = MANIFEST) -> list[ClipSpec]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        segs = tuple(tuple(float(x) for x in s.split("-")) for s in r["segments"].split(";") if s.strip())
        out.append(
            ClipSpec(
                r["clip"],
                r["package"],
                tuple(r["members"].split(";")),
                r["pick"] or "all",
                segs,  # type: ignore[arg-type]
                r["speaker_id"],
                r["gender"],
                r["age"],
                r["language"],
                r["licence"],
                r["label_source"],
            )
        )
    return out


def _fetch_deb(name: str, debs: Path) -> Path:
    """The package's .deb in ``debs`` (downloaded once with the machine's apt sources)."""
    found = sorted(debs.glob(f"{name}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise CorpusError(f"cannot fetch {name}: apt-get is not available on this machine")
    debs.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["apt-get", "download", name], cwd=debs, capture_output=True, text=True, timeout=900)
    found = sorted(debs.glob(f"{name}_*.deb"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CorpusError(f"cannot fetch {name}: apt-get download failed ({tail[0]}); try 'apt-get update' first")
    return found[-1]


def _match(path: str, pattern: str) -> bool:
    path = path.removeprefix("./")
    if "**" in pattern:
        head, _, tail = pattern.partition("**/")
        return path.startswith(head) and fnmatch.fnmatch(path.rsplit("/", 1)[-1], tail)
    return fnmatch.fnmatch(path, pattern) and path.count("/") == pattern.count("/")


def _unpack(deb: Path, patterns: set[str], dest: Path) -> None:
    """Extract the members matching ``patterns`` from the deb's data tarball into ``dest``."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isfile() and any(_match(name, p) for p in patterns):
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is not None:
                    target.write_bytes(src.read())
    if proc.wait() != 0:
        raise CorpusError(f"dpkg-deb could not read {deb.name}")


def _select(files: list[Path], pick: str) -> list[Path]:
    files = sorted(files)
    if pick == "all":
        return files
    if pick.startswith("every:"):
        return files[:: max(1, len(files) // max(1, int(pick.split(":")[1])))]
    raise CorpusError(f"unknown pick {pick!r} (all, every:N)")


#: Headerless telephony prompts (Asterisk's voice packages): FFmpeg reads them only when told the format.
RAW_FORMATS = {".g722": "g722", ".gsm": "gsm"}


def _decode_raw(data: bytes, fmt: str) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data), format=fmt) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frames = [r for f in container.decode(audio=0) for r in resampler.resample(f)] + list(resampler.resample(None))
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32) if frames else np.zeros(0, np.float32)


def _decode(path: Path) -> np.ndarray:
    from engines.audio import decode_audio

    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if path.suffix in RAW_FORMATS:
        return _decode_raw(data, RAW_FORMATS[path.suffix])
    return decode_audio(data).pcm


def build_clip(spec: ClipSpec, root: Path) -> np.ndarray:
    files = [p for pat in spec.members for p in root.glob(pat)]
    files = _select([p for p in dict.fromkeys(files) if p.is_file()], spec.pick)
    if not files:
        raise CorpusError(f"{spec.clip}: no file in {spec.package} matches {';'.join(spec.members)}")
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), np.float32)
    parts: list[np.ndarray] = []
    total = 0
    for f in files:
        pcm = _decode(f)
        if spec.segments:
            pcm = np.concatenate([pcm[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in spec.segments])
        parts += [pcm, gap]
        total += len(pcm)
        if total >= MAX_CLIP_SECONDS * SAMPLE_RATE:
            break
    return np.concatenate(parts)[: int(MAX_CLIP_SECONDS * SAMPLE_RATE * 1.3)]


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    path.write_bytes(buf.getvalue())


def corpus_dir() -> Path:
    from engines.engine_cache import cache_root

    return cache_root() / "real-speech"


def build_corpus(
    out: Path | None = None,
    packages: set[str] | None = None,
    manifest: Path = MANIFEST,
    progress=lambda m: print(m, file=sys.stderr, flush=True),
) -> Path:
    """Fetch, unpack and join; returns the path of the eval manifest it wrote.

    ``packages`` limits the build to those Debian package names. A package that cannot be
    fetched is reported and skipped (its rows are left out), never silently mislabelled.
    """
    out = out or corpus_dir()
    specs = [s for s in read_manifest(manifest) if packages is None or s.package_name in packages]
    if not specs:
        raise CorpusError(f"no manifest row is from {', '.join(sorted(packages or []))}")
    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rows = []
    by_pkg: dict[str, list[ClipSpec]] = {}
    for s in specs:
        by_pkg.setdefault(s.package_name, []).append(s)
    for pkg, group in by_pkg.items():
        done = [s for s in group if (clips / f"{s.clip}.wav").exists()]
        if len(done) < len(group):
            try:
                progress(f"fetching {pkg} …")
                deb = _fetch_deb(pkg, out / "debs")
                with tempfile.TemporaryDirectory(dir=out) as tmp:
                    _unpack(deb, {m for s in group for m in s.members}, Path(tmp))
                    for s in group:
                        try:
                            _write_wav(clips / f"{s.clip}.wav", build_clip(s, Path(tmp)))
                        except CorpusError as exc:
                            progress(f"  skipped {exc}")
            except (CorpusError, subprocess.SubprocessError, OSError) as exc:
                progress(f"  skipped {pkg}: {exc}")
                continue
        for s in group:
            if not (clips / f"{s.clip}.wav").exists():
                continue
            rows.append(
                {
                    "file": f"clips/{s.clip}.wav",
                    "speaker_id": s.speaker_id,
                    "gender": s.gender,
                    "age": s.age,
                    "source_package": s.package,
                    "language": s.language,
                    "licence": s.licence,
                    "label_source": s.label_source,
                }
            )
    if not rows:
        raise CorpusError("no package of the corpus could be fetched")
    path = out / "manifest.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=EVAL_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    progress(f"{len(rows)} clips from {len({r['source_package'] for r in rows})} packages → {path}")
    return path
