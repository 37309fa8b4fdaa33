"""Re-measure the shipped constants in engines/identity_stats.npz (run by hand, not by CI).

* ``center``/``code_scale``: the population centre and per-channel spread of speaker
  embeddings on the stable identity basis — over the synthetic test voices *and* the real
  dev set (../shared/devset), so real voices spread over the whole avatar space.
* ``gender_direction``/``gender_mid``: the female-minus-male mean embedding of the synthetic
  voices. It is used only to *hedge* the F0 decision when the timbre disagrees (it can lower
  confidence, never flip a label): a direction learnt on synthetic voices is not trusted to
  decide on real ones.
Only these summary vectors are written; no audio and no per-speaker embedding.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.audio import decode_audio  # noqa: E402
from engines.identity import STATS_PATH, measure_stats  # noqa: E402
from engines.pipeline import AvatarEngine  # noqa: E402
from tests import voices  # noqa: E402


def main() -> None:
    engine = AvatarEngine("onnx")
    synth, labels = [], []
    for voice in voices.VOICES:
        for i in range(3):
            update = engine.analyze(decode_audio(voices.synthesize(voice, i)).pcm)
            synth.append(update.embedding)
            labels.append(voice.gender == "female")
    synth_arr, labels_arr = np.stack(synth), np.array(labels)
    real = []
    devset = ROOT.parent / "shared" / "devset"
    for row in csv.DictReader((devset / "manifest.csv").open()):
        real.append(engine.analyze(decode_audio(devset / row["file"]).pcm).embedding)
    population = np.concatenate([synth_arr, np.stack(real)])
    center, scale = measure_stats(population)
    direction = synth_arr[labels_arr].mean(0) - synth_arr[~labels_arr].mean(0)
    direction /= np.linalg.norm(direction)
    proj = synth_arr @ direction
    mid = 0.5 * (proj[labels_arr].mean() + proj[~labels_arr].mean())
    spread = float(
        np.std(np.concatenate([proj[labels_arr] - proj[labels_arr].mean(), proj[~labels_arr] - proj[~labels_arr].mean()]))
    )
    np.savez(
        STATS_PATH,
        center=center,
        code_scale=scale,
        gender_direction=direction.astype(np.float32),
        gender_mid=np.float32(mid),
        gender_spread=np.float32(spread),
    )
    print(f"wrote {STATS_PATH}: {len(synth)} synthetic + {len(real)} real embeddings; gender mid {mid:.4f} spread {spread:.4f}")


if __name__ == "__main__":
    main()
