"""`speech2face` command line: one entry point for the service, the one-shot tools and the checks.

Errors a person can fix (a bad file, a bad option) print one line and exit with status 2;
tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from engines.choices import BACKENDS, PRIVACY_MODES, SIZES

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per inference: see ARCHITECTURE pitfalls

EXIT_USAGE = 2


class UserError(Exception):
    """Reported as `speech2face: error: …` with exit code 2."""


def _engine(backend: str):
    from engines.pipeline import AvatarEngine

    try:
        return AvatarEngine(backend)
    except Exception as exc:  # missing TensorRT/GPU, missing weights: say what is missing
        raise UserError(f"cannot start the {backend} backend: {exc}") from exc


def _decode(path: str):
    from engines.audio import AudioError, decode_audio

    try:
        return decode_audio(path)
    except AudioError as exc:
        raise UserError(f"{path}: {exc}") from exc


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out = {}
    for key in ("gender_presentation", "skin_tone", "hair_style", "hair_colour", "glasses"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def _check_privacy(args: argparse.Namespace) -> None:
    if args.privacy == "room" and not args.room:
        raise UserError("--privacy room needs --room NAME")


def _check_seed(args: argparse.Namespace) -> None:
    from engines.look import check_seed

    try:
        check_seed(args.seed)
    except ValueError as exc:
        raise UserError(f"--seed: {exc}") from exc


def cmd_avatar(args: argparse.Namespace) -> int:
    from engines.render import render_png, render_svg

    _check_privacy(args)
    _check_seed(args)
    if args.size not in SIZES:
        raise UserError("--size must be 256, 384 or 512")
    audio = _decode(args.clip)
    engine = _engine(args.backend)
    try:
        update = engine.analyze(audio.pcm, privacy=args.privacy, room=args.room, overrides=_overrides(args), seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _write(Path(args.output), render_png(update.params, args.size))
    if args.svg:
        _write(Path(args.svg), render_svg(update.params, args.size).encode())
    age = update.age_probs
    print(f"speech heard: {update.seconds_heard:.1f} s (of {audio.seconds:.1f} s audio)")
    print(f"gender presentation: {update.gender} (p_female {update.p_female:.2f})")
    print(f"age band: {update.age_label} (child {age['child']:.2f}, adult {age['adult']:.2f}, senior {age['senior']:.2f})")
    print(f"confidence: {update.confidence:.2f}")
    if update.message:
        print(f"note: {update.message}")
    print(f"wrote {args.output}" + (f" and {args.svg}" if args.svg else ""))
    return 0


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc


def cmd_analyze(args: argparse.Namespace) -> int:
    if not args.json:
        raise UserError("analyze prints JSON lines only: pass --json")
    if args.seconds is not None and args.seconds <= 0:
        raise UserError("--seconds must be positive")
    _check_privacy(args)
    _check_seed(args)
    engine = _engine(args.backend)
    failed = 0
    for path in args.files:
        from engines.audio import AudioError, decode_audio

        try:
            audio = decode_audio(path)
        except AudioError as exc:
            print(f"speech2face: error: {path}: {exc}", file=sys.stderr)
            print(json.dumps({"file": path, "error": str(exc)}), flush=True)
            failed += 1
            continue
        update = engine.analyze(audio.pcm, seconds=args.seconds, privacy=args.privacy, room=args.room, seed=args.seed)
        print(json.dumps({"file": path, **update.to_json()}), flush=True)
    return EXIT_USAGE if failed else 0


def cmd_build_engines(args: argparse.Namespace) -> int:
    from engines.backends import TensorRTBackend, onnx_paths
    from engines.tensorrt_backend import tensorrt_status

    paths = onnx_paths(progress=lambda m: print(m, flush=True))
    for name, path in paths.items():
        print(f"ONNX {name}: {path}")
    ok, why = tensorrt_status()
    if not ok:
        print(f"TensorRT engines not built: {why}")
        print("The default CPU backend (ONNX Runtime) needs nothing more.")
        return 0 if not args.require_tensorrt else EXIT_USAGE
    TensorRTBackend(fp16=args.fp16, progress=lambda m: print(m, flush=True))
    print("TensorRT engines ready.")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import run_eval

    return run_eval([Path(m) for m in args.manifest], Path(args.out), backend=args.backend, cv=not args.no_cv)


def cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus import CorpusError, build_corpus

    try:
        path = build_corpus(Path(args.out) if args.out else None, set(args.package) if args.package else None)
    except CorpusError as exc:
        raise UserError(str(exc)) from exc
    print(path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(quick=args.quick, json_out=args.json)


def cmd_serve(rest: Sequence[str]) -> int:
    from server.serve import main as serve_main

    return int(serve_main(list(rest)) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="speech2face", description="Hear a voice, draw a face.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--backend", default=os.environ.get("S2F_BACKEND", "onnx"), choices=BACKENDS)
        sp.add_argument("--privacy", default="stable", choices=PRIVACY_MODES)
        sp.add_argument("--room", default=None, help="room name (privacy mode 'room')")
        sp.add_argument(
            "--seed",
            default=None,
            help="look seed you own: picks skin tone, hair and eye colour (same seed, same colours for any voice);"
            " without it those are fixed defaults — never the voice",
        )

    sp = sub.add_parser("serve", help="run the live call service (all flags: speech2face serve --help)", add_help=False)
    sp.set_defaults(func=None)

    sp = sub.add_parser("avatar", help="one clip → avatar PNG (and SVG)")
    sp.add_argument("clip")
    sp.add_argument("-o", "--output", required=True, help="PNG path")
    sp.add_argument("--svg", help="also write an SVG")
    sp.add_argument("--size", type=int, default=384)
    sp.add_argument("--skin-tone", dest="skin_tone", help="porcelain, light, beige, tan, brown, deep")
    sp.add_argument("--gender-presentation", dest="gender_presentation", help="feminine, masculine, neutral")
    sp.add_argument("--hair-style", dest="hair_style")
    sp.add_argument("--hair-colour", dest="hair_colour")
    sp.add_argument("--glasses", choices=("yes", "no"))
    common(sp)
    sp.set_defaults(func=cmd_avatar)

    sp = sub.add_parser("analyze", help="JSON lines per file (the contract in the README)")
    sp.add_argument("files", nargs="+")
    sp.add_argument("--json", action="store_true", required=False)
    sp.add_argument("--seconds", type=float, default=None, help="use only the first N seconds of speech")
    common(sp)
    sp.set_defaults(func=cmd_analyze)

    sp = sub.add_parser("eval", help="in-sample and leave-one-source-out report over labelled manifest CSVs")
    sp.add_argument("manifest", nargs="+", help="CSV(s) with file, speaker_id, gender[, age, source_package]")
    sp.add_argument("--out", default="eval-output", help="report folder")
    sp.add_argument("--backend", default="onnx", choices=BACKENDS)
    sp.add_argument("--no-cv", action="store_true", help="in-sample figures only (faster)")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("corpus", help="fetch the real-speech corpus from Debian packages (speech2face/real_speech.csv)")
    sp.add_argument("--out", default=None, help="folder (default: the user cache dir)")
    sp.add_argument("--package", action="append", help="only this Debian package (repeatable)")
    sp.set_defaults(func=cmd_corpus)

    sp = sub.add_parser("build-engines", help="export ONNX and build TensorRT engines ahead of time")
    sp.add_argument("--fp16", action="store_true")
    sp.add_argument("--require-tensorrt", action="store_true", help="exit 2 when TensorRT or a GPU is missing")
    sp.set_defaults(func=cmd_build_engines)

    sp = sub.add_parser("bench", help="engine benchmarks, each against its baseline")
    sp.add_argument("--quick", action="store_true", help="fewer repetitions")
    sp.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print every figure as one JSON object on stdout (the table goes to stderr), or write it to FILE",
    )
    sp.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "serve":
        return cmd_serve(argv[1:])
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"speech2face: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
