"""The few numbers of the gender head that are fitted on real labelled speech, and the fit.

Fitted by ``scripts/calibrate.py`` on real recordings only (the dev set's trusted adult
labels plus the package corpus of ``speech2face corpus``; synthetic voices are never used:
heads trained on espeak/MBROLA learn the synthesiser) and shipped as ``traits.npz``:

* ``probe`` (256) — the female−male direction of the GE2E embedding, an LDA direction with
  the within-class covariance shrunk halfway to a multiple of the identity (``PROBE_SHRINK``,
  fixed a priori, not tuned), from one mean embedding per training speaker;
  ``probe_mid``/``probe_spread`` centre and scale its score (the midpoint of the two class
  means and the pooled within-class spread);
* ``w_f0``, ``w_probe``, ``bias`` — a logistic regression of the label on the decoder's two
  saturating cues times the evidence weight (Platt scaling: its output is the calibrated
  probability), with a small L2 penalty, every speaker weighted equally. The probe cue it
  is fitted on is cross-fitted (each speaker scored by a probe trained without them), so the
  probe's weight reflects how it does on voices it has not seen.

``speech2face eval`` calls :func:`fit_gender` again inside every leave-one-source-out fold,
so the cross-validated figures never see the held-out speakers, probe included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TRAITS_PATH = Path(__file__).with_name("traits.npz")
EMBEDDING_SIZE = 256
PROBE_SHRINK = 0.5
L2_PENALTY = 0.05
SCALARS = ("probe_mid", "probe_spread", "w_f0", "w_probe", "bias", "child_f0_st")
CHILD_F0_MARGIN_ST = 0.5  # the child pitch margin starts this far above the highest adult heard


@dataclass(frozen=True)
class TraitConstants:
    probe: np.ndarray = field(default_factory=lambda: np.zeros(EMBEDDING_SIZE, np.float32), repr=False)
    probe_mid: float = 0.0
    probe_spread: float = 1.0
    w_f0: float = 3.0  # before calibration: F0 alone, about what the literature spreads give
    w_probe: float = 0.0
    bias: float = 0.0
    #: median F0 (semitones re 50 Hz) from which the decoder's pitch-alone child margin counts: half
    #: a semitone above the highest trusted adult's median F0 in the calibration data (default 270 Hz)
    child_f0_st: float = 29.2

    def save(self, path: Path = TRAITS_PATH) -> None:
        arrays: dict[str, Any] = {"probe": self.probe.astype(np.float32)}
        arrays.update({k: np.float32(getattr(self, k)) for k in SCALARS})
        np.savez(path, **arrays)


def load_traits(path: Path = TRAITS_PATH) -> TraitConstants:
    if not path.exists():
        return TraitConstants()
    d = np.load(path)
    return TraitConstants(d["probe"].astype(np.float32), **{k: float(d[k]) for k in SCALARS if k in d})


def fit_probe(embeddings: np.ndarray, female: np.ndarray, speakers: list[str]) -> tuple[np.ndarray, float, float]:
    """Shrunk-LDA direction from one mean embedding per speaker; its midpoint and spread."""
    ids = sorted(set(speakers))
    spk = np.array(speakers)
    means = np.stack([embeddings[spk == s].mean(0) for s in ids])
    lab = np.array([bool(female[spk == s][0]) for s in ids])
    if lab.all() or not lab.any():
        raise ValueError("the probe needs speakers of both labels")
    mf, mm = means[lab].mean(0), means[~lab].mean(0)
    resid = np.concatenate([means[lab] - mf, means[~lab] - mm])
    cov = resid.T @ resid / max(1, len(resid) - 2)
    ridge = max(np.trace(cov) / len(cov), 1e-8)  # few speakers: the pooled covariance may be zero
    cov = (1 - PROBE_SHRINK) * cov + PROBE_SHRINK * ridge * np.eye(len(cov))
    d = np.linalg.solve(cov, mf - mm)
    d /= np.linalg.norm(d)
    proj_f, proj_m = means[lab] @ d, means[~lab] @ d
    mid = 0.5 * (proj_f.mean() + proj_m.mean())
    spread = float(np.sqrt(np.mean(np.concatenate([proj_f - proj_f.mean(), proj_m - proj_m.mean()]) ** 2))) + 1e-6
    return d.astype(np.float32), float(mid), spread


def fit_weights(
    cues: np.ndarray, evidence: np.ndarray, female: np.ndarray, sample_weight: np.ndarray
) -> tuple[float, float, float]:
    """Weighted L2-penalised logistic regression: logit = evidence · (w_f0·c0 + w_probe·c1 + bias)."""
    from scipy.optimize import minimize

    x = np.column_stack([cues[:, 0], cues[:, 1], np.ones(len(cues))]) * evidence[:, None]
    y = female.astype(np.float64)
    w = sample_weight / sample_weight.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta
        p = 1.0 / (1.0 + np.exp(-z))
        nll = np.sum(w * (np.logaddexp(0.0, z) - y * z))
        grad = x.T @ (w * (p - y))
        pen = L2_PENALTY * np.sum(theta[:2] ** 2)
        return float(nll + pen), grad + 2 * L2_PENALTY * np.concatenate([theta[:2], [0.0]])

    res = minimize(loss, np.array([3.0, 0.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1]), float(res.x[2])


def fit_gender(
    full_embeddings: np.ndarray,
    full_speakers: list[str],
    full_female: np.ndarray,
    rows: list[tuple[np.ndarray, np.ndarray, bool, str]],
) -> TraitConstants:
    """The whole fit. ``full_*``: one row per clip (whole clip) for the probe; ``rows``:
    (embedding, features, female, speaker) at every checkpoint for the logistic weights."""
    import torch

    from .decoder import evidence_weight, gender_cues

    probe, mid, spread = fit_probe(full_embeddings, full_female, full_speakers)
    emb = torch.as_tensor(np.stack([r[0] for r in rows]), dtype=torch.float32)
    feats = torch.as_tensor(np.stack([r[1] for r in rows]), dtype=torch.float32)
    female = np.array([r[2] for r in rows])
    speakers = [r[3] for r in rows]
    # cross-fitting: each row's probe cue comes from a probe that never saw its speaker, so the
    # weights learn how far the probe holds on a *new* voice, not how well it fits its own data
    cues = np.zeros((len(rows), 2), np.float32)
    spk_full = np.array(full_speakers)
    with torch.no_grad():
        ev = evidence_weight(feats).numpy()
        for s in sorted(set(speakers)):
            keep = spk_full != s
            try:
                p_s, m_s, sd_s = fit_probe(full_embeddings[keep], full_female[keep], list(spk_full[keep]))
            except ValueError:  # without this speaker one label has nobody left: use the full probe
                p_s, m_s, sd_s = probe, mid, spread
            idx = np.array([i for i, x in enumerate(speakers) if x == s])
            c = gender_cues(emb[idx], feats[idx], torch.as_tensor(p_s), torch.tensor(m_s), torch.tensor(sd_s))
            cues[idx] = c.numpy()
    counts = {s: speakers.count(s) for s in set(speakers)}
    weight = np.array([1.0 / counts[s] for s in speakers])
    w_f0, w_probe, bias = fit_weights(cues, ev, female, weight)
    return TraitConstants(probe, mid, spread, w_f0, w_probe, bias)


def fit_child_f0(adult_f0_st: np.ndarray) -> float:
    """Where the pitch-alone child margin starts: ``CHILD_F0_MARGIN_ST`` above the highest trusted adult's median F0.

    Real children are too few to fit a boundary on (two in the dev set), adults are not: only a
    whole-clip median F0 beyond every labelled adult's can speak for a child on pitch alone.
    Fitted on the trusted adult labels only, so a child never decides its own boundary."""
    return float(np.max(adult_f0_st)) + CHILD_F0_MARGIN_ST
