"""The `speech2face` command as a user runs it: a real subprocess, real files, exit codes and messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from engines.face import N_PARAMS
from tests import voices


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speech2face", *args], capture_output=True, text=True, timeout=timeout)


def test_avatar_writes_png_and_svg_and_prints_beliefs(speech_wav, tmp_path):
    png, svg = tmp_path / "face.png", tmp_path / "face.svg"
    res = run("avatar", str(speech_wav["female"]), "-o", str(png), "--svg", str(svg), "--size", "512")
    assert res.returncode == 0, res.stderr
    assert "gender presentation: female" in res.stdout and "confidence:" in res.stdout
    with Image.open(png) as im:
        assert im.size == (512, 512) and im.format == "PNG"
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and root.get("width") == "512"


def test_analyze_json_lines_contract(speech_wav, bad_inputs):
    files = [str(speech_wav["female"]), str(speech_wav["male"])]
    res = run("analyze", "--json", "--seconds", "3", *files)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["file"] for d in lines] == files
    for d, label in zip(lines, ("female", "male")):
        assert d["gender"]["label"] == label and 0.0 <= d["gender"]["p_female"] <= 1.0
        assert d["age"]["label"] in ("child", "adult", "senior") and set(d["age"]["probs"]) == {"child", "adult", "senior"}
        assert len(d["face"]["vector"]) == N_PARAMS == len(d["face"]["params"])
        assert d["speech_seconds"] == pytest.approx(3.0) and 0.0 <= d["confidence"] <= 1.0


@pytest.mark.parametrize("name", ["empty", "not_audio", "truncated"])
def test_bad_files_exit_2_with_a_message(bad_inputs, name, tmp_path):
    res = run("avatar", str(bad_inputs[name]), "-o", str(tmp_path / "x.png"))
    assert res.returncode == 2
    assert res.stderr.startswith("speech2face: error:") and "Traceback" not in res.stderr
    assert not (tmp_path / "x.png").exists()


def test_room_privacy_without_a_room_exits_2(speech_wav):
    res = run("analyze", "--json", "--privacy", "room", str(speech_wav["male"]))
    assert res.returncode == 2 and "--room" in res.stderr and "Traceback" not in res.stderr


def test_missing_file_and_bad_size_exit_2(tmp_path, speech_wav):
    assert run("avatar", str(tmp_path / "nope.wav"), "-o", str(tmp_path / "x.png")).returncode == 2
    res = run("avatar", str(speech_wav["male"]), "-o", str(tmp_path / "x.png"), "--size", "300")
    assert res.returncode == 2 and "256, 384 or 512" in res.stderr


@pytest.mark.parametrize("name", ["silence", "short_speech"])
def test_too_little_speech_gives_neutral_avatar_and_says_how_much_more(bad_inputs, name, tmp_path):
    res = run("avatar", str(bad_inputs[name]), "-o", str(tmp_path / "n.png"))
    assert res.returncode == 0, res.stderr
    assert "more speech" in res.stdout and (tmp_path / "n.png").stat().st_size > 1000


def test_ten_minutes_of_audio_is_bounded(bad_inputs):
    res = run("analyze", "--json", str(bad_inputs["long"]), timeout=240)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["speech_seconds"] <= 120.0


def test_eval_reports_cross_validated_beside_in_sample(voice_corpus, tmp_path):
    manifest = tmp_path / "manifest.csv"
    chosen = ["mbrola-us1", "mbrola-us2", "espeak-en-f3", "espeak-en-m7"]
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "speaker_id", "gender", "age", "source_package"])
        for name in chosen:  # one "source" per voice: four leave-one-source-out folds
            gender = "F" if voices.voice_by_name(name).gender == "female" else "M"
            for path in voice_corpus[name][:2]:
                w.writerow([str(path), name, gender, "30", f"deb:synthetic-{name}"])
    out = tmp_path / "report"
    res = run("eval", str(manifest), "--out", str(out), timeout=600)
    assert res.returncode == 0, res.stderr
    report = (out / "report.md").read_text()
    assert "| measure | n | cross-validated | in-sample | median F0 > 165 Hz |" in report
    for row in ("| gender, 1 s |", "| gender, 3 s |", "| gender, full clip | 8 clips / 4 speakers |", "confidently wrong"):
        assert row in report
    assert "same-speaker retrieval, face vector, top-1" in report and "4 speakers" in report
    assert "GE2E embedding itself" in report
    cv_full = next(line for line in report.splitlines() if line.startswith("| gender, full clip"))
    assert cv_full.split("|")[3].strip().endswith("%")  # a cross-validated figure, not a dash
    assert "fold 4/4" in res.stderr and "[8/8]" in res.stderr  # progress shown
    assert (out / "gender_vs_seconds.png").stat().st_size > 5000


def test_build_engines_explains_missing_tensorrt():
    res = run("build-engines")
    assert res.returncode == 0
    assert "ONNX encoder" in res.stdout
    assert "TensorRT" in res.stdout
    strict = run("build-engines", "--require-tensorrt")
    assert strict.returncode in (0, 2)  # 0 only on a machine with a GPU and TensorRT


def test_bench_prints_figures_against_baselines():
    """``bench --json``: one JSON object on stdout with every figure, the table on stderr."""
    res = run("bench", "--quick", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    assert "baseline" in res.stderr and "frame from cache" in res.stderr
    figures = json.loads(res.stdout)
    for key in ("frame_from_cache_ms", "vp8_encode_frame_ms", "redraw_full_ms", "redraw_session_mean_ms", "encoder_onnx_b1_ms"):
        assert figures[key] > 0, key
    assert figures["redraw_target_ms"] == pytest.approx(3 * figures["vp8_encode_frame_ms"], rel=0.01)
    assert 0 <= figures["refinements_redrawn"] <= figures["refinements_in_session"]
