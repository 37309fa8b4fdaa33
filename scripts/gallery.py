"""Contact sheets and animations of the avatars, for the README (``make gallery``).

- ``docs/gallery.png`` / ``docs/gallery_64.png``: faces from the synthetic test voices
  (tests/voices.py), at 256 and 64 px.
- ``docs/gallery_devset.png`` / ``docs/gallery_devset_64.png``: faces from real recorded
  speech (../shared/devset, one clip per speaker), at 256 and 64 px; skipped when the dev
  set is not there (a fresh clone). Only pictures are written, never audio.
- ``docs/hair_styles.png``: every hair silhouette across the skin tones and hair colours.
- ``docs/speaking.png`` and ``docs/speaking.gif``: a face speaking a sentence, with the mouth
  shape per frame chosen from the audio (engines/viseme.py) and openness from its envelope.

Each face is what ``speech2face avatar`` draws for the whole clip. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.audio import decode_audio  # noqa: E402
from engines.face import HAIR_STYLES, SPECS_BY_NAME, FaceParams  # noqa: E402
from engines.render import AvatarRenderer, render_rgb  # noqa: E402
from engines.render_face import HAIR_LENGTH_RANGE  # noqa: E402
from engines.render_palette import HAIR_BASE, SKIN  # noqa: E402

DOCS = ROOT / "docs"
DEVSET = ROOT.parent / "shared" / "devset"
CAPTION = 34
SPEAKING_CLIP = "vallex_en1.wav"  # real English speech from the dev set, when it is there


def _font(size: int = 11):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def _sheet(tiles: list[tuple[np.ndarray, str, str]], tile: int, cols: int, out: Path, caption: bool = True) -> None:
    rows = (len(tiles) + cols - 1) // cols
    ch = CAPTION if caption else 0
    sheet = Image.new("RGB", (cols * tile, rows * (tile + ch)), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(11 if tile >= 128 else 9)
    for i, (img, top, sub) in enumerate(tiles):
        pic = Image.fromarray(img)
        if pic.size[0] != tile:
            pic = pic.resize((tile, tile), Image.LANCZOS)
        x, y = (i % cols) * tile, (i // cols) * (tile + ch)
        sheet.paste(pic, (x, y))
        if caption:
            draw.text((x + 4, y + tile + 2), top, fill="black", font=font)
            draw.text((x + 4, y + tile + 17), sub, fill="#555", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    print(f"wrote {out}", file=sys.stderr)


def _engine():
    from engines.pipeline import AvatarEngine

    return AvatarEngine("onnx")


def test_voices(engine) -> None:
    from tests import voices

    tiles256, tiles64 = [], []
    for i, voice in enumerate(voices.VOICES):
        path = voices.synthesize(voice, voices.LONG_SENTENCE_INDEX)
        update = engine.analyze(decode_audio(path).pcm)
        img = render_rgb(update.params, 256)
        sub = f"p_f {update.p_female:.2f} · {update.age_label} · conf {update.confidence:.2f}"
        tiles256.append((img, f"{voice.name} ({voice.gender[0].upper()})", sub))
        tiles64.append((np.asarray(Image.fromarray(img).resize((64, 64), Image.LANCZOS)), "", ""))
        print(f"[{i + 1}/{len(voices.VOICES)}] {voice.name}", file=sys.stderr)
    _sheet(tiles256, 192, 7, DOCS / "gallery.png")
    _sheet(tiles64, 64, 12, DOCS / "gallery_64.png", caption=False)


def devset(engine) -> None:
    manifest = DEVSET / "manifest.csv"
    if not manifest.exists():
        print(f"no dev set at {DEVSET}: skipping the real-voice sheets", file=sys.stderr)
        return
    with manifest.open() as f:
        rows = list(csv.DictReader(f))
    seen, chosen = set(), []
    for r in rows:
        if r["speaker_id"] not in seen:
            seen.add(r["speaker_id"])
            chosen.append(r)
    tiles256, tiles64 = [], []
    for i, r in enumerate(chosen):
        update = engine.analyze(decode_audio(DEVSET / r["file"]).pcm)
        img = render_rgb(update.params, 256)
        label = r["gender"] + (" child" if "child" in (r["age_if_known"] or "") else "")
        tiles256.append((img, f"{Path(r['file']).stem[:22]} ({label})", f"p_f {update.p_female:.2f} · {update.age_label}"))
        tiles64.append((np.asarray(Image.fromarray(img).resize((64, 64), Image.LANCZOS)), "", ""))
        print(f"[{i + 1}/{len(chosen)}] {r['file']}", file=sys.stderr)
    _sheet(tiles256, 160, 10, DOCS / "gallery_devset.png")
    _sheet(tiles64, 64, 10, DOCS / "gallery_devset_64.png", caption=False)


def hair_styles() -> None:
    spec = SPECS_BY_NAME["hair_style"]
    tiles = []
    for i, style in enumerate(HAIR_STYLES):
        lo, hi = HAIR_LENGTH_RANGE[style]
        kw = dict(hair_style=spec.value_of(style), hair_length=(lo + hi) / 2, femininity=0.5, age=0.35, baldness=0.0)
        if style in ("receding", "bald"):
            kw.update(baldness=0.55 if style == "receding" else 1.0, age=0.6, femininity=0.1)
        kw.update(skin_tone=(i % len(SKIN) + 0.5) / len(SKIN), hair_colour=((i * 3) % len(HAIR_BASE) + 0.5) / len(HAIR_BASE))
        tiles.append((render_rgb(FaceParams.neutral().replace(**kw), 256), style, ""))
    _sheet(tiles, 160, 9, DOCS / "hair_styles.png")


def speaking(engine, clip: Path | None) -> None:
    """A frame strip and GIF of one face saying a sentence (visemes from its own audio)."""
    from engines.mouth import MouthEnvelope

    if clip is None and (DEVSET / SPEAKING_CLIP).exists():
        clip = DEVSET / SPEAKING_CLIP
    if clip is None:
        from tests import voices

        clip = voices.synthesize(voices.voice_by_name("espeak-en-us-f3"), 0)
    pcm = decode_audio(clip).pcm
    update = engine.analyze(pcm)
    r = AvatarRenderer(256)
    r.set_params(update.params)
    # the live path's pieces: 20 ms packets into the envelope (openness + viseme), 15 fps frames
    env = MouthEnvelope(clock=lambda: 0.0)
    fps, hop = 15, 16000 // 50
    frames, labels = [], []
    t_next = 0.0
    for i in range(0, len(pcm) - hop, hop):
        t = (i + hop) / 16000
        env.push(pcm[i : i + hop], 16000, arrival=t)
        if t >= t_next:
            t_next += 1 / fps
            reading = env.reading(now=t)
            mix = {reading.shape: 1.0 - reading.mix, reading.toward: reading.mix} if reading.toward else reading.shape
            frames.append(r.frame(reading.value, 0.0, viseme=mix))
            labels.append(reading.shape)
    gif = [Image.fromarray(f).resize((192, 192), Image.LANCZOS) for f in frames[: fps * 6]]
    gif[0].save(DOCS / "speaking.gif", save_all=True, append_images=gif[1:], duration=int(1000 / fps), loop=0, optimize=True)
    print(f"wrote {DOCS / 'speaking.gif'}", file=sys.stderr)
    # the strip: the mouth region of consecutive frames, labelled with the heaviest shape
    box = r.layers.mouth.box
    x0, y0, x1, y1 = box[0] - 10, box[1] - 12, box[2] + 10, box[3] + 2
    step = 2
    pick = list(range(0, min(len(frames), 2 * 24 * step), step))
    tw, th = (x1 - x0) * 2, (y1 - y0) * 2
    cols = 12
    rows = (len(pick) + cols - 1) // cols
    strip = Image.new("RGB", (cols * tw, rows * (th + 16)), "white")
    draw = ImageDraw.Draw(strip)
    for k, i in enumerate(pick):
        crop = Image.fromarray(frames[i][y0:y1, x0:x1]).resize((tw, th), Image.LANCZOS)
        x, y = (k % cols) * tw, (k // cols) * (th + 16)
        strip.paste(crop, (x, y))
        draw.text((x + 4, y + th + 2), f"{i / fps:.2f}s {labels[i]}", fill="black", font=_font(10))
    strip.save(DOCS / "speaking.png", optimize=True)
    print(f"wrote {DOCS / 'speaking.png'}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("voices", "devset", "hair", "speaking"), action="append")
    ap.add_argument(
        "--speaking-clip",
        type=Path,
        help=f"audio for the speaking strip (default: the dev set's {SPEAKING_CLIP}, else espeak-ng)",
    )
    args = ap.parse_args(argv)
    only = set(args.only or ("voices", "devset", "hair", "speaking"))
    engine = _engine() if only & {"voices", "devset", "speaking"} else None
    if "hair" in only:
        hair_styles()
    if "devset" in only:
        devset(engine)
    if "voices" in only:
        test_voices(engine)
    if "speaking" in only:
        speaking(engine, args.speaking_clip)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
