"""Contact sheet of avatars made from the synthetic test voices (docs/gallery.png).

Each tile is what `speech2face avatar` draws for that voice's long sentence, captioned with
the voice, its documented label and what the engine believed. Run: `make gallery`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.audio import decode_audio  # noqa: E402
from engines.pipeline import AvatarEngine  # noqa: E402
from engines.render import AvatarRenderer  # noqa: E402
from tests import voices  # noqa: E402

TILE, CAPTION, COLS = 192, 34, 7


def main(out: Path = ROOT / "docs" / "gallery.png") -> None:
    engine = AvatarEngine("onnx")
    renderer = AvatarRenderer(256)
    chosen = voices.VOICES
    rows = (len(chosen) + COLS - 1) // COLS
    sheet = Image.new("RGB", (COLS * TILE, rows * (TILE + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 11)
    except OSError:
        font = ImageFont.load_default()
    for i, voice in enumerate(chosen):
        path = voices.synthesize(voice, voices.LONG_SENTENCE_INDEX)
        update = engine.analyze(decode_audio(path).pcm)
        renderer.set_params(update.params)
        tile = Image.fromarray(renderer.frame(0.0, 0.0)).resize((TILE, TILE), Image.LANCZOS)
        x, y = (i % COLS) * TILE, (i // COLS) * (TILE + CAPTION)
        sheet.paste(tile, (x, y))
        draw.text((x + 4, y + TILE + 2), f"{voice.name} ({voice.gender[0].upper()})", fill="black", font=font)
        draw.text(
            (x + 4, y + TILE + 17),
            f"p_f {update.p_female:.2f} · {update.age_label} · conf {update.confidence:.2f}",
            fill="#555",
            font=font,
        )
        print(f"[{i + 1}/{len(chosen)}] {voice.name}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
