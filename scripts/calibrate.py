"""Re-measure the shipped constants from real labelled speech (run by hand, not by CI).

    .venv/bin/python scripts/calibrate.py [MANIFEST.csv ...]

Default data: the dev set (../shared/devset/manifest.csv) plus the package corpus that
``speech2face corpus`` rebuilds from Debian packages (speech2face/real_speech.csv). No
synthetic voice is used. Writes, with the same code ``speech2face eval`` runs inside its
cross-validation folds (``evaluate.fit_constants``):

* ``engines/traits.npz`` — the gender head: the GE2E probe direction with its midpoint and
  spread (trusted adult F/M labels, one mean embedding per speaker) and the three logistic
  weights (F0 cue, probe cue, bias) over every checkpoint (1, 2, 3, 6 s, full), and the child
  pitch boundary (half a semitone above the highest trusted adult's median F0);
* ``engines/identity_stats.npz`` — the identity basis: population centre, the 32 principal
  axes of the speaker means (first- and second-half embeddings of every clip, labelled or
  not) and each axis's spread.

Only these summaries are written: no audio and no per-speaker embedding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.identity import STATS_PATH  # noqa: E402
from engines.pipeline import AvatarEngine  # noqa: E402
from engines.traits import TRAITS_PATH  # noqa: E402
from speech2face.corpus import build_corpus  # noqa: E402
from speech2face.evaluate import fit_constants, load_clips  # noqa: E402


def main(argv: list[str]) -> None:
    manifests = [Path(a) for a in argv] or [ROOT.parent / "shared" / "devset" / "manifest.csv", build_corpus()]
    results = load_clips(manifests, AvatarEngine("onnx"), progress=lambda m: print(m, file=sys.stderr, flush=True))
    traits, ident = fit_constants(results)
    traits.save(TRAITS_PATH)
    np.savez(STATS_PATH, center=ident.center, basis=ident.basis, code_scale=ident.code_scale)
    adults = {r.speaker for r in results if r.gender and r.age_band != "child"}
    print(
        f"wrote {TRAITS_PATH.name} and {STATS_PATH.name}: {len(results)} clips, {len({r.speaker for r in results})} speakers"
        f" ({len(adults)} labelled adults); w_f0 {traits.w_f0:.2f} w_probe {traits.w_probe:.2f} bias {traits.bias:.2f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
