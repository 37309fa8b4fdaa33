"""`speech2face eval MANIFEST.csv`: how often the engine agrees with labelled speech.

One streaming pass per clip records what the live path would show after 1, 2, 3 and 6 s of
speech and at the end, so "agreement vs seconds heard" costs one decode. Every figure is
reported next to the plain F0 threshold (median F0 > 165 Hz) measured on the same audio, the
baseline the engine has to beat. Labels written with a question mark (``F?``) or ``unknown``
are guesses and are never scored for gender; children are scored for age band only.
Only aggregate figures are written: no audio and no embedding leaves memory.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.audio import AudioError, decode_audio
from engines.pipeline import AvatarEngine, Update

CHECKPOINTS = (1.0, 2.0, 3.0, 6.0)
BASELINE_HZ = 165.0
CHUNK = 4000  # 0.25 s pushes: every 0.5 s refinement is observed


@dataclass
class ClipResult:
    file: str
    speaker: str
    gender: str | None  # "female"/"male" when trusted, else None
    age_band: str | None
    at: dict[str, Update] = field(default_factory=dict)  # "1", "2", "3", "6", "full"


def _gender_label(raw: str) -> str | None:
    raw = raw.strip().lower()
    return {"f": "female", "female": "female", "m": "male", "male": "male"}.get(raw)


def _age_band(raw: str) -> str | None:
    raw = raw.strip().lower()
    if not raw:
        return None
    if raw in ("child", "adult", "senior"):
        return raw
    try:
        years = float(raw)
    except ValueError:
        return None
    return "child" if years < 13 else "senior" if years >= 65 else "adult"


def analyse_clip(engine: AvatarEngine, path: Path) -> dict[str, Update]:
    pcm = decode_audio(path).pcm
    pipe = engine.pipeline()
    at: dict[str, Update] = {}
    pending = list(CHECKPOINTS)
    for i in range(0, len(pcm), CHUNK):
        update = pipe.push(pcm[i : i + CHUNK])
        while update is not None and pending and update.seconds_heard >= pending[0] - 1e-9:
            key = f"{pending.pop(0):g}"
            at[key] = update
    at["full"] = pipe.finish()
    return at


def run_eval(manifest: Path, out_dir: Path, backend: str = "onnx") -> int:
    if not manifest.is_file():
        print(f"speech2face: error: no such manifest: {manifest}", file=sys.stderr)
        return 2
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"file", "speaker_id", "gender"}
    if not rows or not need <= set(rows[0]):
        print(f"speech2face: error: {manifest} needs the columns {', '.join(sorted(need))} (and optionally age)", file=sys.stderr)
        return 2
    engine = AvatarEngine(backend)
    results: list[ClipResult] = []
    started = time.monotonic()
    for n, row in enumerate(rows, 1):
        path = (manifest.parent / row["file"]).resolve()
        print(f"[{n}/{len(rows)}] {row['file']}", file=sys.stderr, flush=True)
        try:
            at = analyse_clip(engine, path)
        except AudioError as exc:
            print(f"  skipped: {exc}", file=sys.stderr)
            continue
        age_raw = row.get("age") or row.get("age_if_known") or ""
        results.append(ClipResult(row["file"], row["speaker_id"], _gender_label(row["gender"]), _age_band(age_raw), at))
    if not results:
        print("speech2face: error: no clip in the manifest could be decoded", file=sys.stderr)
        return 2
    report = summarise(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plots(results, report, out_dir)
    (out_dir / "report.md").write_text(_markdown(report, manifest, time.monotonic() - started))
    print((out_dir / "report.md").read_text())
    print(f"report written to {out_dir / 'report.md'}", file=sys.stderr)
    return 0


def summarise(results: list[ClipResult]) -> dict:
    keys = [f"{c:g}" for c in CHECKPOINTS] + ["full"]
    gender_rows = [r for r in results if r.gender and r.age_band != "child"]
    rep: dict = {"n_clips": len(results), "n_gender_scored": len(gender_rows), "gender": {}, "age": {}, "retrieval": {}}
    for k in keys:
        scored = [r for r in gender_rows if k in r.at]
        if not scored:
            continue
        ours = [r.at[k].gender == r.gender for r in scored]
        base = [
            (r.at[k].f0_median_hz > BASELINE_HZ) == (r.gender == "female") for r in scored if not math.isnan(r.at[k].f0_median_hz)
        ]
        confident_wrong = [r.at[k].gender != r.gender and max(r.at[k].p_female, 1 - r.at[k].p_female) > 0.8 for r in scored]
        rep["gender"][k] = {
            "n": len(scored),
            "ours": float(np.mean(ours)),
            "f0_threshold": float(np.mean(base)) if base else float("nan"),
            "confidently_wrong": int(sum(confident_wrong)),
            "mean_confidence": float(np.mean([r.at[k].confidence for r in scored])),
            "errors": [r.file for r, ok in zip(scored, ours) if not ok],
        }
    aged = [r for r in results if r.age_band]
    if aged:
        rep["age"] = {
            "n": len(aged),
            "agreement": float(np.mean([r.at["full"].age_label == r.age_band for r in aged])),
            "rows": [(r.file, r.age_band, r.at["full"].age_label, round(r.at["full"].age_probs[r.age_band], 3)) for r in aged],
        }
    rep["retrieval"] = _retrieval(results)
    return rep


def _retrieval(results: list[ClipResult]) -> dict:
    """Top-1 same-speaker retrieval by embedding and by the face vector, over speakers with ≥2 clips."""
    speakers = [r.speaker for r in results]
    multi = [i for i, s in enumerate(speakers) if speakers.count(s) > 1]
    if not multi:
        return {}
    emb = np.stack([r.at["full"].embedding for r in results])
    face = np.stack([r.at["full"].params.vector for r in results])
    out = {"queries": len(multi)}
    for name, x, metric in (("embedding", emb, "cos"), ("face_vector", face, "l2")):
        if metric == "cos":
            d = 1.0 - x @ x.T
        else:
            d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
        np.fill_diagonal(d, np.inf)
        hits = [speakers[int(np.argmin(d[i]))] == speakers[i] for i in multi]
        out[name] = float(np.mean(hits))
    same = [np.linalg.norm(face[i] - face[j]) for i in multi for j in multi if i < j and speakers[i] == speakers[j]]
    diff = [
        np.linalg.norm(face[i] - face[j])
        for i in range(len(results))
        for j in range(i + 1, len(results))
        if speakers[i] != speakers[j]
    ]
    out["face_distance_same_speaker"] = float(np.mean(same))
    out["face_distance_different_speakers"] = float(np.mean(diff))
    return out


def _plots(results: list[ClipResult], rep: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(rep["gender"])
    xs = [6.5 if k == "full" else float(k) for k in keys]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(xs, [rep["gender"][k]["ours"] for k in keys], "o-", label="speech2face")
    ax.plot(xs, [rep["gender"][k]["f0_threshold"] for k in keys], "s--", label="F0 > 165 Hz")
    ax.plot(xs, [rep["gender"][k]["mean_confidence"] for k in keys], "^:", label="mean confidence")
    ax.set_xticks(xs, [k if k == "full" else f"{k} s" for k in keys])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("speech heard")
    ax.set_ylabel("agreement with label")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "gender_vs_seconds.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for label, colour in (("female", "tab:red"), ("male", "tab:blue")):
        ps = [r.at["full"].p_female for r in results if r.gender == label and r.age_band != "child"]
        ax.hist(ps, bins=np.linspace(0, 1, 21), alpha=0.6, color=colour, label=f"labelled {label} (n={len(ps)})")
    ax.set_xlabel("p_female (full clip)")
    ax.set_ylabel("clips")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "p_female_by_label.png")
    plt.close(fig)


def _markdown(rep: dict, manifest: Path, seconds: float) -> str:
    lines = [
        f"# speech2face eval: {manifest.name}",
        "",
        f"{rep['n_clips']} clips decoded; {rep['n_gender_scored']} with a trusted adult gender label; {seconds:.0f} s.",
        "",
    ]
    lines += [
        "## Gender presentation agreement",
        "",
        "| speech heard | n | speech2face | F0 > 165 Hz | confidently wrong (p>0.8) | mean confidence |",
        "|---|---|---|---|---|---|",
    ]
    for k, g in rep["gender"].items():
        lines.append(
            f"| {k if k == 'full' else k + ' s'} | {g['n']} | {g['ours']:.1%} | {g['f0_threshold']:.1%} "
            f"| {g['confidently_wrong']} | {g['mean_confidence']:.2f} |"
        )
    full = rep["gender"].get("full")
    if full and full["errors"]:
        lines += ["", "Disagreements (full clip): " + ", ".join(full["errors"])]
    if rep["age"]:
        lines += [
            "",
            "## Age band",
            "",
            f"Agreement {rep['age']['agreement']:.1%} over {rep['age']['n']} clips with a known age.",
            "",
            "| file | label | ours | p(label) |",
            "|---|---|---|---|",
        ]
        lines += [f"| {f} | {a} | {b} | {p} |" for f, a, b, p in rep["age"]["rows"]]
    r = rep["retrieval"]
    if r:
        lines += [
            "",
            "## Same-speaker retrieval (top-1)",
            "",
            f"{r['queries']} queries (speakers with ≥ 2 clips): embedding {r['embedding']:.1%}, "
            f"face vector {r['face_vector']:.1%}.",
            f"Mean face-vector distance: same speaker {r['face_distance_same_speaker']:.3f}, "
            f"different speakers {r['face_distance_different_speakers']:.3f}.",
        ]
    lines += ["", "![gender vs seconds](gender_vs_seconds.png)", "", "![p_female by label](p_female_by_label.png)", ""]
    return "\n".join(lines)
