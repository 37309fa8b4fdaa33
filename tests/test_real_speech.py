"""The real-speech corpus: the manifest is sound and the fetcher rebuilds clips from a Debian package.

CI reaches the Debian archive, so the fetch test runs there; it uses the smallest source
(``transcriber``, 1 MB: a France Inter excerpt whose annotation names the speaker and marks
him male) so what CI downloads stays bounded. The whole corpus (~300 MB of packages) is for
``speech2face corpus`` / ``speech2face eval`` / ``scripts/calibrate.py``, not for tests.
"""

from __future__ import annotations

import csv
import shutil
import subprocess

import pytest

from engines.audio import decode_audio
from speech2face.corpus import EVAL_COLUMNS, MANIFEST, CorpusError, build_corpus, read_manifest

TRUSTED = {"F", "M"}


def test_manifest_rows_name_package_licence_and_label_provenance():
    specs = read_manifest()
    assert len(specs) >= 40
    assert len({s.clip for s in specs}) == len(specs)
    assert len({s.speaker_id for s in specs}) == len(specs)  # one clip per speaker: halves give the pairs
    for s in specs:
        assert s.package.startswith("deb:") and s.members and s.licence and s.label_source, s.clip
        assert s.gender in TRUSTED | {"unknown"}, s.clip
        if s.gender in TRUSTED:  # a trusted label says where it comes from
            sources = ("credit", "CREDITS", "changelog", "Speaker", "dialogs", "docbook", "copyright", "LEEME")
            assert any(w in s.label_source for w in sources), s.clip
        else:
            assert "identity only" in s.label_source, s.clip
    # the repository ships the manifest, never the audio
    assert not any(p.suffix in (".wav", ".ogg", ".flac") for p in MANIFEST.parent.rglob("*"))


def _apt_can_download() -> bool:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return False
    probe = subprocess.run(["apt-cache", "policy", "transcriber"], capture_output=True, text=True, timeout=60)
    return "Candidate:" in probe.stdout and "(none)" not in probe.stdout.split("Candidate:")[1].splitlines()[0]


def test_fetcher_rebuilds_a_labelled_clip_from_its_package(tmp_path, onnx_engine):
    if not _apt_can_download():
        pytest.skip("apt-get/dpkg-deb missing or the 'transcriber' package is not in the apt lists (run apt-get update)")
    try:
        manifest = build_corpus(tmp_path, packages={"transcriber"})
    except CorpusError as exc:
        pytest.skip(f"the Debian archive could not be reached: {exc}")
    rows = list(csv.DictReader(manifest.open()))
    assert tuple(rows[0]) == EVAL_COLUMNS and [r["speaker_id"] for r in rows] == ["simon_tivolle"]
    clip = decode_audio(tmp_path / rows[0]["file"])
    assert 12.0 < clip.seconds < 15.0  # the two annotated turns (4.35 s + 9.21 s) and a gap
    update = onnx_engine.analyze(clip.pcm)
    assert update.gender == "male" and update.p_female < 0.3  # the annotation says male
    # a second build reuses the clip (no second download)
    (tmp_path / "debs").rename(tmp_path / "debs-gone")
    assert build_corpus(tmp_path, packages={"transcriber"}) == manifest
    with pytest.raises(CorpusError, match="no manifest row"):
        build_corpus(tmp_path, packages={"no-such-package"})


def test_headerless_telephony_prompts_decode(tmp_path):
    """Asterisk's prompts are raw G.722 (no header): the corpus decoder names the format for FFmpeg."""
    import io

    import av
    import numpy as np

    from speech2face.corpus import SAMPLE_RATE, _decode

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 220.0 * t) * 32767).astype(np.int16)[None]
    buf = io.BytesIO()
    with av.open(buf, "w", format="g722") as out:
        stream = out.add_stream("g722", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    path = tmp_path / "prompt.g722"
    path.write_bytes(buf.getvalue())
    pcm = _decode(path)
    assert abs(len(pcm) - SAMPLE_RATE) < 0.05 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(pcm) - 220.0) < 5.0
