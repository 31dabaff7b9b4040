"""Bring a directory in the original API's layout (`Voices/<name>.wav` + `<name>.txt`) into the
configured voice library:

    python -m tts_worker.voices import Voices/ [--replace] [--language en] [--write-txt]

(`import_seed()` in code). Storage comes from the environment as for the worker (`S3_BUCKET`... or
`STORAGE_DIR`). A clip without a .txt, or one longer than 12 s (whose text the trim makes stale), is
transcribed with the baked ASR model, as the original `convert_transcriptions` tool did: the command
loads that model alone (`alignment.Aligner.load_asr`, from `MODEL_DIR`) and only when some clip needs
it, so importing clips that all have their text never imports torch. `--write-txt` also writes each
new transcript next to its clip, for review (an existing .txt is never overwritten).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tts_worker.errors import InvalidInput, ModelDirError, WorkerError
from tts_worker.voices import MAX_REFERENCE_SECONDS, Transcriber, VoiceLibrary

if TYPE_CHECKING:
    from tts_worker.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # file name -> error message
    transcribed: list[str] = field(default_factory=list)  # imported with a transcript made by the ASR model


def import_seed(
    library: VoiceLibrary,
    directory: Path,
    *,
    replace: bool = False,
    language: str | None = None,
    transcribe: Transcriber | None = None,
    write_txt: bool = False,
) -> ImportReport:
    """Upload every `<name>.wav` (+ `<name>.txt`) in `directory`; one voice's failure doesn't stop the rest.
    A clip without a .txt is transcribed with `transcribe`; `write_txt` writes that transcript next to it."""
    if not directory.is_dir():
        raise InvalidInput(f"directory: {directory} is not a directory")
    report = ImportReport()
    for path in seed_clips(directory):
        text_path = path.with_suffix(".txt")
        text = text_path.read_text(encoding="utf-8").strip() if text_path.is_file() else None
        try:
            info = library.upload(path.stem, path.read_bytes(), text, language, replace=replace, transcribe=transcribe)
        except WorkerError as exc:
            report.failed[path.name] = exc.message
            logger.warning("voices: %s not imported: %s", path.name, exc.message)
            continue
        report.imported.append(path.stem)
        for warning in info.warnings():
            logger.warning("voices: %s: %s", path.name, warning)
        if info.ref_text_source == "transcribed":
            report.transcribed.append(path.stem)
            logger.info("voices: %s transcribed: %s", path.name, info.ref_text)
            if write_txt and text is None:
                try:
                    text_path.write_text(info.ref_text + "\n", encoding="utf-8")
                except OSError as exc:
                    logger.warning("voices: could not write %s (%s)", text_path.name, exc.strerror or "I/O error")
    return report


def seed_clips(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() == ".wav" and p.is_file())


def needs_transcription(directory: Path, max_seconds: float = MAX_REFERENCE_SECONDS) -> list[Path]:
    """The clips of a seed directory the import must transcribe: no .txt, or too long to keep their text."""
    import soundfile as sf

    needed = []
    for path in seed_clips(directory):
        if not path.with_suffix(".txt").is_file():
            needed.append(path)
            continue
        try:
            if sf.info(str(path)).duration > max_seconds:
                needed.append(path)
        except (RuntimeError, sf.LibsndfileError):
            pass  # not decodable: the upload says so
    return needed


def load_transcriber(settings: Settings, language: str | None) -> Transcriber:
    """The baked ASR model alone (`Aligner.load_asr`): imports torch and whisperx, so only when needed."""
    from tts_worker.alignment import Aligner
    from tts_worker.manifest import load_verified

    asr = Aligner.load_asr(settings.model_dir, load_verified(settings.model_dir), settings.resolved_device())

    def transcribe(samples: np.ndarray, rate: int) -> str:
        return asr.transcribe(samples, rate, language)

    return transcribe


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tts_worker.voices import DIR`: exit 0 when every voice was imported, 1 otherwise."""
    from tts_worker import log
    from tts_worker.settings import Settings
    from tts_worker.storage import open_storage

    parser = argparse.ArgumentParser(prog="python -m tts_worker.voices", description="Manage the voice library.")
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="import a seed directory of <name>.wav + <name>.txt")
    imp.add_argument("directory", type=Path)
    imp.add_argument("--replace", action="store_true", help="overwrite voices that already exist")
    imp.add_argument("--language", default=None, help="language recorded for every imported voice")
    imp.add_argument(
        "--write-txt", action="store_true", help="write each transcript the ASR model made next to its clip"
    )
    args = parser.parse_args(argv)

    settings = Settings()
    log.configure(settings.log_level)
    library = VoiceLibrary.from_settings(open_storage(settings), settings)
    transcribe: Transcriber | None = None
    try:
        if args.directory.is_dir() and (todo := needs_transcription(args.directory, settings.max_reference_seconds)):
            logger.info("voices: %d clips need a transcript: loading the speech recognition model", len(todo))
            try:
                transcribe = load_transcriber(settings, args.language)
            except ModelDirError as exc:
                logger.error("voices: cannot transcribe (%s); clips without a .txt are not imported", exc)
        report = import_seed(
            library,
            args.directory,
            replace=args.replace,
            language=args.language,
            transcribe=transcribe,
            write_txt=args.write_txt,
        )
    except WorkerError as exc:
        logger.error("voices: %s", exc.message)
        return 1
    logger.info("voices: imported %d: %s", len(report.imported), ", ".join(report.imported) or "-")
    if report.transcribed:
        logger.info("voices: transcribed %d: %s", len(report.transcribed), ", ".join(report.transcribed))
    if report.failed:  # each one was logged with its reason by import_seed
        logger.error("voices: %d not imported: %s", len(report.failed), ", ".join(report.failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
