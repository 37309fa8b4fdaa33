"""`speech2face eval MANIFEST.csv [MORE.csv …]`: how often the engine agrees with labelled real speech.

Two columns for every figure, side by side:

* **in-sample** — the shipped engine as it runs (its constants were fitted on real speech
  that may include these very clips, so this column flatters);
* **cross-validated** — leave-one-source-out: for every source (a package, so one speaker is
  never split across folds) the fitted parts (the gender head: probe + 3 weights; the
  identity basis) are refitted on the *other* sources with the same code as
  ``scripts/calibrate.py``, and the held-out clips are decoded with that refit. This is the
  headline; only speaker-disjoint figures say how a new voice will fare.

Every gender figure sits beside the plain median-F0 > 165 Hz threshold on the same clips and
folds. One streaming pass per clip records what the live path shows after 1, 2, 3 and 6 s of
speech and at the end; two more passes over the first and second half of the clip give the
identity measures (same-speaker retrieval: first-half face → the second-half faces of every
clip; and how far the face moves between halves). Labels with a question mark (``F?``) or
``unknown`` are never scored for gender; children are scored for the age band and a neutral
presentation. Only aggregate figures are written: no audio and no embedding leaves memory.
"""

from __future__ import annotations

import csv
import math
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engines.audio import AudioError, decode_audio
from engines.pipeline import MIN_FACE_SECONDS, AvatarEngine, Update

CHECKPOINTS = (1.0, 2.0, 3.0, 6.0)
KEYS = tuple(f"{c:g}" for c in CHECKPOINTS) + ("full",)
BASELINE_HZ = 165.0
CHUNK = 4000  # 0.25 s pushes: every 0.5 s refinement is observed
CONFIDENTLY_WRONG = 0.2  # p of the true label below this
NEUTRAL_BAND = 0.15  # |p_female − 0.5| within this is a neutral presentation


@dataclass
class ClipResult:
    file: str
    speaker: str
    source: str  # the fold: one package (or one dataset) per source
    gender: str | None  # "female"/"male" when trusted, else None
    age_band: str | None
    at: dict[str, Update] = field(default_factory=dict)  # "1", "2", "3", "6", "full"
    halves: tuple[Update, Update] | None = None


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


def _source(row: dict[str, str]) -> str:
    """Fold key: the package name without its kind prefix or inner path."""
    raw = (row.get("source_package") or row.get("source") or "").strip()
    raw = re.sub(r"^(deb|pypi):", "", raw)
    raw = re.sub(r"\s*\(.*\)$", "", raw)
    return raw or row.get("speaker_id", "?")


def analyse_clip(engine: AvatarEngine, pcm: np.ndarray) -> dict[str, Update]:
    pipe = engine.pipeline()
    at: dict[str, Update] = {}
    pending = list(CHECKPOINTS)
    for i in range(0, len(pcm), CHUNK):
        update = pipe.push(pcm[i : i + CHUNK])
        while update is not None and pending and update.seconds_heard >= pending[0] - 1e-9:
            at[f"{pending.pop(0):g}"] = update
    at["full"] = pipe.finish()
    return at


def load_clips(manifests: list[Path], engine: AvatarEngine, progress=print) -> list[ClipResult]:
    rows: list[tuple[Path, dict[str, str]]] = []
    seen: set[str] = set()
    for manifest in manifests:
        with manifest.open(newline="") as fh:
            mrows = list(csv.DictReader(fh))
        need = {"file", "speaker_id", "gender"}
        if not mrows or not need <= set(mrows[0]):
            raise ValueError(f"{manifest} needs the columns {', '.join(sorted(need))} (and optionally age, source_package)")
        new = [r for r in mrows if r["speaker_id"] not in seen]  # a speaker already listed is not counted twice
        seen |= {r["speaker_id"] for r in mrows}
        rows += [(manifest, r) for r in new]
    results = []
    for n, (manifest, row) in enumerate(rows, 1):
        path = (manifest.parent / row["file"]).resolve()
        progress(f"[{n}/{len(rows)}] {row['file']}")
        try:
            pcm = decode_audio(path).pcm
        except AudioError as exc:
            progress(f"  skipped: {exc}")
            continue
        mid = len(pcm) // 2
        halves = (analyse_clip(engine, pcm[:mid])["full"], analyse_clip(engine, pcm[mid:])["full"])
        at = analyse_clip(engine, pcm)
        if any(u.embedding is None for u in (*halves, at["full"])):
            progress(f"  skipped: under {2 * MIN_FACE_SECONDS:g} s of speech")
            continue
        at = {k: u for k, u in at.items() if u.embedding is not None}
        age = row.get("age") or row.get("age_if_known") or ""
        results.append(
            ClipResult(row["file"], row["speaker_id"], _source(row), _gender_label(row["gender"]), _age_band(age), at, halves)
        )
    return results


# ------------------------------------------------------------------ decoding with refitted constants
@dataclass
class Decoded:
    """What one set of constants says about a clip: p_female/p_child per checkpoint, half faces."""

    p_female: dict[str, float]
    p_child: float
    age_label: str
    halves: tuple[np.ndarray, np.ndarray]


def _features(u: Update) -> np.ndarray:
    from engines.profile import FEATURE_NAMES

    return np.array([u.voice[k] for k in FEATURE_NAMES], np.float32)


def as_shipped(r: ClipResult) -> Decoded:
    full = r.at["full"]
    return Decoded(
        {k: u.p_female for k, u in r.at.items()},
        full.age_probs["child"],
        full.age_label,
        (r.halves[0].params.vector, r.halves[1].params.vector),
    )


def decode_with(results: list[ClipResult], traits, identity) -> list[Decoded]:
    """Re-run the face decoder (torch, the graph that is exported) with other constants."""
    import torch

    from engines.decoder import AGE_BANDS, FaceDecoder
    from engines.face import N_PARAMS
    from engines.look import apply_look

    dec = FaceDecoder(traits).eval()
    values, mask = apply_look(np.zeros(N_PARAMS, np.float32), np.zeros(N_PARAMS, np.float32), None)  # default look
    updates = [
        (i, k, u) for i, r in enumerate(results) for k, u in list(r.at.items()) + [("h0", r.halves[0]), ("h1", r.halves[1])]
    ]
    emb = torch.as_tensor(np.stack([u.embedding for _, _, u in updates]))
    feats = torch.as_tensor(np.stack([_features(u) for _, _, u in updates]))
    n = len(updates)
    with torch.no_grad():
        params, p_female, age_probs, _ = dec(
            emb,
            feats,
            torch.as_tensor(identity.basis),
            torch.as_tensor(identity.center),
            torch.as_tensor(identity.code_scale),
            torch.as_tensor(np.tile(values, (n, 1))),
            torch.as_tensor(np.tile(mask, (n, 1))),
        )
    out = [Decoded({}, 0.0, "adult", (np.zeros(0), np.zeros(0))) for _ in results]
    halves: dict[int, dict[str, np.ndarray]] = {}
    for row, (i, k, _) in enumerate(updates):
        if k in ("h0", "h1"):
            halves.setdefault(i, {})[k] = params[row].numpy()
            continue
        out[i].p_female[k] = float(p_female[row])
        if k == "full":
            out[i].p_child = float(age_probs[row, 0])
            out[i].age_label = AGE_BANDS[int(age_probs[row].argmax())]
    for i, h in halves.items():
        out[i].halves = (h["h0"], h["h1"])
    return out


def fit_constants(results: list[ClipResult]):
    """The calibration fit (scripts/calibrate.py uses this too): gender head + identity basis."""
    from engines.identity import IdentityBasis, measure_stats
    from engines.traits import fit_child_f0, fit_gender

    adults = [r for r in results if r.gender and r.age_band != "child"]
    full_emb = np.stack([r.at["full"].embedding for r in adults])
    rows = [(u.embedding, _features(u), r.gender == "female", r.speaker) for r in adults for u in r.at.values()]
    traits = fit_gender(full_emb, [r.speaker for r in adults], np.array([r.gender == "female" for r in adults]), rows)
    traits = replace(traits, child_f0_st=fit_child_f0(np.array([_features(r.at["full"])[0] for r in adults])))
    emb = np.stack([h.embedding for r in results for h in r.halves])
    center, basis, scale = measure_stats(emb, [r.speaker for r in results for _ in r.halves])
    return traits, IdentityBasis(basis, center, scale)


def folds(results: list[ClipResult]) -> list[str]:
    """Each clip's fold: its source, with sources that share a speaker merged (a speaker is never split)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for r in results:
        parent[root("src:" + r.source)] = root("spk:" + r.speaker)
    names: dict[str, str] = {}
    for r in results:  # name a fold by its first source
        names.setdefault(root("src:" + r.source), r.source)
    return [names[root("src:" + r.source)] for r in results]


def cross_validate(results: list[ClipResult], progress=print) -> list[Decoded]:
    """Leave-one-source-out: every clip decoded by constants fitted without its source."""
    out: list[Decoded | None] = [None] * len(results)
    fold = folds(results)
    sources = sorted(set(fold))
    for n, src in enumerate(sources, 1):
        held = [i for i, f in enumerate(fold) if f == src]
        train = [r for r, f in zip(results, fold) if f != src]
        progress(f"fold {n}/{len(sources)}: hold out {src} ({len(held)} clips)")
        traits, identity = fit_constants(train)
        for i, d in zip(held, decode_with([results[i] for i in held], traits, identity)):
            out[i] = d
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------ scoring
def _f0_female(u: Update) -> bool | None:
    hz = u.f0_median_hz
    return None if math.isnan(hz) else hz > BASELINE_HZ


def score(results: list[ClipResult], decoded: list[Decoded]) -> dict:
    adults = [(r, d) for r, d in zip(results, decoded) if r.gender and r.age_band != "child"]
    rep: dict = {"gender": {}, "children": {}, "retrieval": {}}
    for k in KEYS:
        scored = [(r, d) for r, d in adults if k in r.at and k in d.p_female]
        if not scored:
            continue
        p_true = [d.p_female[k] if r.gender == "female" else 1 - d.p_female[k] for r, d in scored]
        base = [_f0_female(r.at[k]) == (r.gender == "female") for r, _ in scored]
        rep["gender"][k] = {
            "n": len(scored),
            "speakers": len({r.speaker for r, _ in scored}),
            "ours": float(np.mean([p > 0.5 for p in p_true])),
            "f0_threshold": float(np.mean(base)),
            "confidently_wrong": int(sum(p < CONFIDENTLY_WRONG for p in p_true)),
            "errors": [r.file for (r, _), p in zip(scored, p_true) if p <= 0.5],
        }
    kids = [(r, d) for r, d in zip(results, decoded) if r.age_band == "child"]
    rep["children"] = {
        "n": len(kids),
        "as_child": int(sum(d.age_label == "child" for _, d in kids)),
        "neutral": int(sum(abs(d.p_female["full"] - 0.5) <= NEUTRAL_BAND for _, d in kids)),
        "rows": [(r.file, round(d.p_child, 3), round(d.p_female["full"], 3)) for r, d in kids],
    }
    adult_rows = [(r, d) for r, d in adults]  # trusted adults only: an unlabelled high voice may be a child
    rep["adults_as_child"] = int(sum(d.age_label == "child" for _, d in adult_rows))
    rep["n_adults_aged"] = len(adult_rows)
    rep["retrieval"] = _retrieval(results, decoded)
    return rep


def _retrieval(results: list[ClipResult], decoded: list[Decoded]) -> dict:
    """First-half face of each clip → nearest second-half face (L2) over every clip."""
    if len(results) < 2:
        return {}
    a = np.stack([d.halves[0] for d in decoded])
    b = np.stack([d.halves[1] for d in decoded])
    spk = [r.speaker for r in results]
    dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    hits = [spk[int(np.argmin(dist[i]))] == spk[i] for i in range(len(results))]
    same = np.diag(dist)
    other = dist[np.array(spk)[:, None] != np.array(spk)[None, :]]
    # the same search on the GE2E embeddings themselves (cosine; nothing fitted): what the face could keep
    ea = np.stack([r.halves[0].embedding for r in results])
    eb = np.stack([r.halves[1].embedding for r in results])
    nearest = np.argmax(ea @ eb.T, axis=1)
    return {
        "queries": len(results),
        "speakers": len(set(spk)),
        "top1": float(np.mean(hits)),
        "embedding_top1": float(np.mean([spk[int(j)] == spk[i] for i, j in enumerate(nearest)])),
        "half_distance_same": float(np.mean(same)),
        "distance_different": float(np.mean(other)),
    }


# ------------------------------------------------------------------ report
def run_eval(manifests: list[Path], out_dir: Path, backend: str = "onnx", cv: bool = True) -> int:
    for m in manifests:
        if not m.is_file():
            print(f"speech2face: error: no such manifest: {m}", file=sys.stderr)
            return 2
    engine = AvatarEngine(backend)
    started = time.monotonic()

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        results = load_clips(manifests, engine, progress)
    except ValueError as exc:
        print(f"speech2face: error: {exc}", file=sys.stderr)
        return 2
    if not results:
        print("speech2face: error: no clip in the manifest could be decoded", file=sys.stderr)
        return 2
    insample = score(results, [as_shipped(r) for r in results])
    crossval = None
    n_sources = len({r.source for r in results if r.gender})
    if cv and n_sources >= 3:
        crossval = score(results, cross_validate(results, progress))
    elif cv:
        progress(f"cross-validation skipped: needs labelled speech from ≥ 3 sources, got {n_sources}")
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot(insample, crossval, out_dir / "gender_vs_seconds.png")
    text = report_markdown(results, insample, crossval, manifests, time.monotonic() - started)
    (out_dir / "report.md").write_text(text)
    print(text)
    progress(f"report written to {out_dir / 'report.md'}")
    return 0


def _plot(ins: dict, cv: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(ins["gender"])
    xs = [8.0 if k == "full" else float(k) for k in keys]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    if cv:
        ax.plot(xs, [cv["gender"].get(k, {}).get("ours", np.nan) for k in keys], "o-", label="speech2face, cross-validated")
    ax.plot(xs, [ins["gender"][k]["ours"] for k in keys], "o:", alpha=0.6, label="speech2face, in-sample")
    ax.plot(xs, [ins["gender"][k]["f0_threshold"] for k in keys], "s--", label="median F0 > 165 Hz")
    ax.set_xticks(xs, [k if k == "full" else f"{k} s" for k in keys])
    ax.set_ylim(0.5, 1.01)
    ax.set_xlabel("speech heard")
    ax.set_ylabel("gender agreement")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def report_markdown(results: list[ClipResult], ins: dict, cv: dict | None, manifests: list[Path], seconds: float) -> str:
    sources = sorted({r.source for r in results})
    labelled = {r.speaker for r in results if r.gender and r.age_band != "child"}
    lines = [
        f"# speech2face eval: {', '.join(m.name for m in manifests)}",
        "",
        f"{len(results)} clips, {len({r.speaker for r in results})} speakers, {len(sources)} sources; "
        f"{len(labelled)} speakers with a trusted adult gender label; {seconds:.0f} s.",
        "Cross-validated = leave-one-source-out (the gender head and identity basis refitted without the held-out source).",
        "",
        "| measure | n | cross-validated | in-sample | median F0 > 165 Hz |",
        "|---|---|---|---|---|",
    ]
    cvg = (cv or {}).get("gender", {})
    for k, g in ins["gender"].items():
        c = cvg.get(k, {})
        label = "full clip" if k == "full" else f"{k} s"
        lines.append(
            f"| gender, {label} | {g['n']} clips / {g['speakers']} speakers | {_pct(c.get('ours'))} "
            f"| {_pct(g['ours'])} | {_pct(g['f0_threshold'])} |"
        )
    for k in ("3", "full"):
        if k in ins["gender"]:
            c = cvg.get(k, {})
            lines.append(
                f"| confidently wrong (p true < {CONFIDENTLY_WRONG}), {k if k == 'full' else k + ' s'} "
                f"| {ins['gender'][k]['n']} | {c.get('confidently_wrong', '—')} | {ins['gender'][k]['confidently_wrong']} | — |"
            )
    ch, cch = ins["children"], (cv or {}).get("children", {})
    if ch["n"]:
        lines.append(
            f"| children shown as children | {ch['n']} | {cch.get('as_child', '—')} of {ch['n']} "
            f"| {ch['as_child']} of {ch['n']} | — |"
        )
        lines.append(
            f"| children with a neutral presentation | {ch['n']} | {cch.get('neutral', '—')} of {ch['n']} "
            f"| {ch['neutral']} of {ch['n']} | — |"
        )
    lines.append(
        f"| labelled adults shown as children | {ins['n_adults_aged']} | {(cv or {}).get('adults_as_child', '—')} "
        f"| {ins['adults_as_child']} | — |"
    )
    r, cr = ins["retrieval"], (cv or {}).get("retrieval", {})
    if r:
        lines.append(
            f"| same-speaker retrieval, face vector, top-1 (first half → second halves) | {r['speakers']} speakers "
            f"| {_pct(cr.get('top1'))} | {_pct(r['top1'])} | — |"
        )
        lines.append(
            f"| same-speaker retrieval, GE2E embedding itself (cosine, nothing fitted) | {r['speakers']} speakers "
            f"| {_pct(r['embedding_top1'])} | {_pct(r['embedding_top1'])} | — |"
        )
        lines.append(
            f"| face distance, first half ↔ second half / different speakers | {r['queries']} "
            f"| {cr.get('half_distance_same', float('nan')):.3f} / {cr.get('distance_different', float('nan')):.3f} "
            f"| {r['half_distance_same']:.3f} / {r['distance_different']:.3f} | — |"
        )
    errs = (cv or ins)["gender"].get("full", {}).get("errors", [])
    if errs:
        lines += ["", ("Cross-validated" if cv else "In-sample") + " disagreements (full clip): " + ", ".join(errs)]
    if ch["n"]:
        lines += ["", "Children (in-sample p_child, p_female): " + ", ".join(f"{f} ({a}, {b})" for f, a, b in ch["rows"])]
    lines += ["", "![gender vs seconds](gender_vs_seconds.png)", ""]
    return "\n".join(lines)
