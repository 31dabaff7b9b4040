"""Subtitles from word timings, checked the way a viewer would notice.

Timing ground truth is real speech with exact word boundaries: espeak-ng speaks each word
to its own clip, the clips are trimmed to their first and last audible sample and joined
with known gaps of digital silence. The ASS files are read back with pysubs2 and with a
small reader that follows libass's escaping rules, and rendered by ffmpeg's libass.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pysubs2
import pytest
import soundfile as sf

from tts_worker.subtitles import CONTENT_TYPES, SUBTITLE_FORMATS, SubtitleOptions, build
from tts_worker.words import WordTiming

WJ = "\u2060"  # WORD JOINER: what the builder puts after a user's backslash

# (word, silence before it in seconds). Zero gaps test adjacent words; the 1.3 s gap is a pause
# long enough (>= split_pause 1.0 s) to take the subtitles off screen, placed where the two
# lines on screen are not full yet.
SCRIPT = [
    ("Hello,", 0.25),
    ("world.", 0.08),
    ("Subtitles", 1.3),
    ("follow", 0.0),
    ("the", 0.12),
    ("voice", 0.06),
    ("closely.", 0.0),
    ("Then", 0.30),
    ("silence", 0.15),
    ("ends.", 0.07),
]
TAIL = 0.3  # silence after the last word
AFTER_PAUSE = next(n for n, (_, gap) in enumerate(SCRIPT) if gap >= 1.0)


# --- helpers ---------------------------------------------------------------------------------------


def words_from(spans: list[tuple[str, float, float]]) -> list[WordTiming]:
    return [WordTiming(word=w, start=s, end=e, score=0.9, interpolated=False) for w, s, e in spans]


def ass_syllables(text: str) -> list[tuple[int, str]]:
    """An ASS event's karaoke syllables as libass reads them: (centiseconds, visible text).

    Follows libass: `{...}` is an override block, `\\{` `\\}` are literal braces, `\\N` a line
    break. Fails on any override tag other than karaoke, and on a backslash that libass could
    read as an escape (the builder must have neutralised it with a word joiner).
    """
    syllables: list[list] = []

    def add(s: str) -> None:
        assert syllables, f"text before the first karaoke tag in {text!r}"
        syllables[-1][1] += s

    i = 0
    while i < len(text):
        c = text[i]
        if c == "{":
            j = text.index("}", i)
            block = text[i + 1 : j]
            # karaoke, and the smaller size (and back) of a word too wide for a line
            assert re.fullmatch(r"(\\k[fo]?\d+|\\fs\d+(\.\d)?)+", block), f"override block {block!r} in {text!r}"
            syllables += [[int(m[1]), ""] for m in re.finditer(r"\\k[fo]?(\d+)", block)]
            i = j + 1
        elif c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt in ("{", "}"):
                add(nxt)
            elif nxt == "N":
                add("\n")
            elif nxt == WJ:
                add("\\")
            else:
                raise AssertionError(f"libass would read {text[i : i + 2]!r} as an escape in {text!r}")
            i += 2
        else:
            add(c)
            i += 1
    return [(cs, s) for cs, s in syllables]


def event_lines(event: pysubs2.SSAEvent) -> list[list[str]]:
    visible = "".join(s for _, s in ass_syllables(event.text))
    return [line.split(" ") for line in visible.split("\n")]


def highlights(subs: pysubs2.SSAFile) -> list[tuple[str, int, int]]:
    """(word, event index, highlight start in ms) for every word, from the karaoke durations."""
    out = []
    for n, event in enumerate(subs.events):
        t = event.start
        for cs, s in ass_syllables(event.text):
            if s.strip():
                out.append((s.strip(), n, t))
            t += cs * 10
    return out


def load_ass(words: list[WordTiming], duration: float | None = None, **options) -> pysubs2.SSAFile:
    """The ASS file's karaoke layer (style Default). With `ko` an outline layer lies under it, checked
    in test_ko_draws_an_outline_layer_under_the_karaoke."""
    data, content_type = build("ass", words, SubtitleOptions(**options), duration)
    assert content_type == CONTENT_TYPES["ass"]
    subs = pysubs2.SSAFile.from_string(data.decode("utf-8"), format_="ass")
    subs.events = [e for e in subs.events if e.style == "Default"]
    return subs


def assert_karaoke_invariants(subs: pysubs2.SSAFile, words: list[WordTiming]) -> None:
    """Sums equal durations; every word appears once, in order, highlighted within one 10 ms tick."""
    for event in subs.events:
        total = sum(cs for cs, _ in ass_syllables(event.text))
        assert total * 10 == event.end - event.start, event.text
    for a, b in itertools.pairwise(subs.events):
        assert a.end <= b.start, "events overlap"
    hl = highlights(subs)
    assert [w for w, _, _ in hl] == [w["word"] for w in words]
    for (_, _, start_ms), w in zip(hl, words, strict=True):
        assert abs(start_ms - w["start"] * 1000) <= 10, (w, start_ms)


# --- ground truth from real speech -----------------------------------------------------------------


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int, list[WordTiming]]:
    """Real speech and its exact word boundaries (audio, sample rate, timings)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    tmp = tmp_path_factory.mktemp("speech")
    pieces, spans, sr, pos = [], [], 0, 0
    for n, (word, gap) in enumerate(SCRIPT):
        path = tmp / f"{n}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), word], check=True, capture_output=True)
        clip, sr = sf.read(path, dtype="float32")
        loud = np.flatnonzero(np.abs(clip) > 0.02 * np.abs(clip).max())
        clip = clip[loud[0] : loud[-1] + 1]
        silence = np.zeros(round(gap * sr), dtype=np.float32)
        pieces += [silence, clip]
        pos += len(silence)
        spans.append((word, pos / sr, (pos + len(clip)) / sr))
        pos += len(clip)
    pieces.append(np.zeros(round(TAIL * sr), dtype=np.float32))
    audio = np.concatenate(pieces)
    return audio, sr, words_from(spans)


@pytest.mark.parametrize("tag", ["k", "kf", "ko"])
def test_karaoke_highlights_each_word_when_its_voice_starts(speech, tag):
    audio, sr, words = speech
    duration = len(audio) / sr
    subs = load_ass(words, duration, karaoke=tag)

    assert_karaoke_invariants(subs, words)
    assert all(re.fullmatch(rf"(\{{\\{tag}\d+\}}[^{{]*)+", e.text) for e in subs.events)
    # Against the audio itself: silence just before each highlight, voice just after it.
    for (_, _, start_ms), (word, gap) in zip(highlights(subs), SCRIPT, strict=True):
        t = start_ms / 1000
        voiced = np.abs(audio[int((t + 0.01) * sr) : int((t + 0.06) * sr)]).max()
        assert voiced > 0.02, f"{word!r} highlighted at {t:.2f} s but no voice follows"
        if gap >= 0.06:
            assert not audio[int((t - 0.04) * sr) : int((t - 0.01) * sr)].any(), f"voice before {word!r}"
    # The long pause takes the text off screen; shorter ones keep it up.
    starts = [e.start for e in subs.events]
    resumed = words[AFTER_PAUSE]
    assert round(resumed["start"] * 100) * 10 in starts
    previous = max((e for e in subs.events if e.start < resumed["start"] * 1000), key=lambda e: e.start)
    assert previous.end <= round(resumed["start"] * 1000) - 1000


def test_srt_and_vtt_cues_match_the_ass_lines_and_the_speech(speech):
    audio, sr, words = speech
    duration = len(audio) / sr
    ass = load_ass(words, duration)
    for fmt in ("srt", "vtt"):
        data, content_type = build(fmt, words, SubtitleOptions(), duration)
        assert content_type == CONTENT_TYPES[fmt]
        cues = pysubs2.SSAFile.from_string(data.decode("utf-8"), format_=fmt)
        assert len(cues) == len(ass.events)
        for cue, event in zip(cues, ass.events, strict=True):
            lines = [" ".join(line) for line in event_lines(event)]
            assert cue.plaintext.split("\n") == lines
            assert abs(cue.start - event.start) <= 5 and abs(cue.end - event.end) <= 5

        data, _ = build(fmt, words, SubtitleOptions(cue_level="word"), duration)
        cues = pysubs2.SSAFile.from_string(data.decode("utf-8"), format_=fmt)
        assert [c.plaintext for c in cues] == [w["word"] for w in words]
        for cue, w in zip(cues, words, strict=True):
            assert abs(cue.start - w["start"] * 1000) <= 1 and abs(cue.end - w["end"] * 1000) <= 1


def test_ko_draws_an_outline_layer_under_the_karaoke(speech):
    _, _, words = speech
    data, _ = build("ass", words, SubtitleOptions(karaoke="ko", outline_colour="#000001"))
    subs = pysubs2.SSAFile.from_string(data.decode("utf-8"))
    base = [e for e in subs.events if e.style == "Outline"]
    karaoke = [e for e in subs.events if e.style == "Default"]
    assert len(base) == len(karaoke) == len(subs.events) // 2 > 0
    for under, over in zip(base, karaoke, strict=True):
        # The same text at the same times, below: the layout is identical, only the drawing differs.
        assert (under.layer, over.layer) == (0, 1) and (under.start, under.end) == (over.start, over.end)
        assert event_lines(under) == event_lines(over)
        assert re.sub(r"\\ko(\d+)", r"\\k\1", over.text) == under.text
    outline, top = subs.styles["Outline"], subs.styles["Default"]
    assert outline.outlinecolor == pysubs2.Color(0, 0, 1) and outline.outline > 0  # every word, throughout
    assert top.outlinecolor == pysubs2.Color(0xFF, 0xD7, 0x00) and top.shadow == 0  # the highlight, once sung
    assert top.secondarycolor.a == 0xFF  # nothing drawn by the top layer before a word is sung


# --- karaoke invariants on awkward times -----------------------------------------------------------


def test_rounding_never_drifts_over_many_short_words():
    # 600 words of 14.9 ms back to back: rounding each duration would put the last
    # highlight 2.9 s early; rounding each boundary keeps every word within a tick.
    words = words_from([("la", n * 0.0149, (n + 1) * 0.0149) for n in range(600)])
    # font_size 1: the width lets all 600 words into the ten lines, so they make one event
    subs = load_ass(words, font_size=1, max_chars_per_line=1000, max_words_per_line=1000, max_lines=10)
    assert len(subs.events) == 1
    assert_karaoke_invariants(subs, words)


@pytest.mark.parametrize("seed", range(5))
def test_karaoke_invariants_hold_for_random_timings(seed):
    rng = random.Random(seed)
    spans, t = [], rng.uniform(0, 0.5)
    for n in range(150):
        t += rng.choice([0.0, 0.0, rng.uniform(0, 0.02), rng.uniform(0.02, 0.4), rng.uniform(0.9, 2.5)])
        length = rng.choice([0.0, rng.uniform(0, 0.012), rng.uniform(0.05, 0.8)])
        spans.append((f"w{n}" + ("." if rng.random() < 0.1 else ""), t, t + length))
        t += length
    words = words_from(spans)
    for tag in ("k", "kf", "ko"):
        subs = load_ass(words, t, karaoke=tag, max_chars_per_line=rng.randint(5, 40))
        assert_karaoke_invariants(subs, words)
        # A pause of split_pause (1 s) or more never stays on screen; shorter ones never blank it.
        hl = highlights(subs)
        for (_, event_a, _), (_, event_b, _), a, b in zip(hl, hl[1:], words, words[1:], strict=False):
            gap = b["start"] - a["end"]
            if gap >= 1.0:
                assert event_a != event_b and subs.events[event_a].end <= round(a["end"] * 100) * 10
            elif event_a != event_b:
                assert subs.events[event_a].end == subs.events[event_b].start


# --- escaping --------------------------------------------------------------------------------------

NASTY = ["{\\i1}bold", "a}b{c", "back\\", "\\N", "{x}", "\\h", "\\{", "}", "{\\p1}m 0 0 l 10 10"]


def test_text_that_looks_like_override_tags_is_shown_as_written():
    spans, t = [], 0.5
    for w in NASTY:
        spans.append((w, t, t + 0.3))
        t += 0.4
    words = words_from(spans)
    subs = load_ass(words, max_lines=1, max_chars_per_line=12)
    # ass_syllables fails on any non-karaoke tag and on any backslash libass would take as an escape;
    # the words read back as libass shows them are the words as written.
    assert_karaoke_invariants(subs, words)

    # SRT and VTT cues show the words as written too (VTT as character references where it must).
    words.append(WordTiming(word="<b>x</b> & -->", start=t, end=t + 0.3, score=None, interpolated=False))
    for fmt in ("srt", "vtt"):
        data, _ = build(fmt, words, SubtitleOptions(cue_level="word"))
        cues = re.findall(r"^\d+\n\S+ --> \S+\n(.*?)\n\n", data.decode(), flags=re.S | re.M)
        if fmt == "vtt":
            assert not any("<" in c or "-->" in c for c in cues)
            cues = [html.unescape(c) for c in cues]
        assert [c.replace(WJ, "") for c in cues] == [w["word"] for w in words]


# --- layout ----------------------------------------------------------------------------------------

PARAGRAPH = (
    "Subtitles are easier to read when every line is short. "
    "They break at sentence ends! And also when a line gets too long, or too wordy, "
    "like this supercalifragilisticexpialidocious word that cannot fit anywhere."
)
TEXT = PARAGRAPH.split()


@pytest.mark.parametrize(
    ("max_chars", "max_words", "max_lines"), [(42, None, 2), (20, 3, 1), (12, 100, 3), (60, 4, 2), (5, None, 2)]
)
def test_lines_respect_the_limits_and_sentences(max_chars, max_words, max_lines):
    words = words_from([(w, n * 0.3, n * 0.3 + 0.25) for n, w in enumerate(TEXT)])
    subs = load_ass(words, max_chars_per_line=max_chars, max_words_per_line=max_words, max_lines=max_lines)
    assert_karaoke_invariants(subs, words)
    seen = []
    for event in subs.events:
        lines = event_lines(event)
        assert 1 <= len(lines) <= max_lines
        for line in lines:
            assert len(" ".join(line)) <= max_chars or len(line) == 1, line
            assert max_words is None or len(line) <= max_words
            assert not any(w[-1] in ".!?" for w in line[:-1]), f"sentence end inside {line}"
            seen += line
    assert seen == TEXT
    # Greedy filling: a line is only broken when the next word would not fit (or ends a sentence).
    all_lines = [line for e in subs.events for line in event_lines(e)]
    for line, nxt in itertools.pairwise(all_lines):
        fits = len(" ".join([*line, nxt[0]])) <= max_chars and (max_words is None or len(line) < max_words)
        assert not fits or line[-1][-1] in ".!?", (line, nxt)


def test_sentence_end_starts_a_new_line_and_short_pauses_keep_text_on_screen():
    words = words_from(
        [("Hi.", 0.0, 0.3), ("How", 0.5, 0.7), ("are", 0.7, 0.9), ("you?", 1.0, 1.4), ("Fine.", 3.0, 3.5)]
    )
    subs = load_ass(words)
    assert [event_lines(e) for e in subs.events] == [[["Hi."], ["How", "are", "you?"]], [["Fine."]]]
    assert (subs.events[0].start, subs.events[0].end) == (0, 1400)  # gap of 1.6 s: off screen
    words[-1] = WordTiming(word="Fine.", start=2.0, end=2.5, score=None, interpolated=True)
    subs = load_ass(words, max_lines=1)
    assert [e.end for e in subs.events] == [500, 2000, 2500]  # held until the next line
    assert_karaoke_invariants(subs, words)


# --- styles and options ----------------------------------------------------------------------------


def test_style_options_reach_the_ass_file():
    words = words_from([("Hi", 0.1, 0.4)])
    subs = load_ass(
        words,
        font="DejaVu Sans",
        font_size=80,
        primary_colour="#112233",
        highlight_colour="#a0b0c0",
        outline_colour="#000001",
        outline=2.5,
        shadow=1,
        position="top",
        resolution="vertical",
    )
    assert (subs.info["PlayResX"], subs.info["PlayResY"]) == ("1080", "1920")
    style = subs.styles["Default"]
    assert style.fontname == "DejaVu Sans" and style.fontsize == 80
    assert style.secondarycolor == pysubs2.Color(0x11, 0x22, 0x33)  # before the highlight
    assert style.primarycolor == pysubs2.Color(0xA0, 0xB0, 0xC0)  # once highlighted
    assert style.outlinecolor == pysubs2.Color(0, 0, 1)
    assert (style.outline, style.shadow) == (2.5, 1)
    assert style.alignment == pysubs2.Alignment.TOP_CENTER
    assert load_ass(words).info["PlayResY"] == "1080"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("primary_colour", "red"),
        ("highlight_colour", "#FFF"),
        ("outline_colour", "#GG0000"),
        ("primary_colour", "FFFFFF"),
        ("highlight_colour", "#FFFFFF00"),
        ("font", "Arial, Bold"),
        ("font", ""),
        ("font_size", 0),
        ("max_lines", 0),
        ("max_chars_per_line", 0),
        ("max_words_per_line", -1),
        ("resolution", "portrait"),
        ("karaoke", "K"),
        ("position", "left"),
        ("cue_level", "char"),
        ("outline", -1),
        ("shadow", float("nan")),
        ("split_pause", 0),
        ("margin_v", 5000),
    ],
)
def test_bad_options_name_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        SubtitleOptions(**{option: value})


def test_words_breaking_the_contract_are_rejected():
    ok = words_from([("a", 0.0, 0.5), ("b", 0.5, 1.0)])
    build("ass", ok, duration=1.0)
    with pytest.raises(ValueError, match="overlaps"):
        build("srt", words_from([("a", 0.0, 0.5), ("b", 0.4, 1.0)]))
    with pytest.raises(ValueError, match="after the audio"):
        build("ass", ok, duration=0.9)
    with pytest.raises(ValueError, match="before the audio"):
        build("vtt", words_from([("a", -0.5, 0.5)]))
    with pytest.raises(ValueError, match="non-finite"):
        build("json", words_from([("a", 0.0, float("inf"))]))
    with pytest.raises(ValueError, match="format"):
        build("sbv", ok)


def test_no_words_gives_valid_empty_documents():
    for fmt in SUBTITLE_FORMATS:
        data, content_type = build(fmt, [], duration=1.0)
        assert content_type == CONTENT_TYPES[fmt]
        if fmt in ("ass", "srt", "vtt"):
            assert len(pysubs2.SSAFile.from_string(data.decode(), format_=fmt)) == 0
    assert json.loads(build("json", [])[0]) == []
    assert build("csv", [])[0] == b"word,start,end,score,interpolated\n"


def test_a_word_without_visible_text_keeps_its_time_but_adds_no_blank():
    words = words_from([("a", 0.1, 0.2), (" \n ", 0.3, 0.4), ("b", 0.5, 0.6)])
    subs = load_ass(words)
    assert event_lines(subs.events[0]) == [["a", "b"]]
    assert sum(cs for cs, _ in ass_syllables(subs.events[0].text)) == 50
    for fmt in ("srt", "vtt"):
        for level in ("line", "word"):
            data, _ = build(fmt, words, SubtitleOptions(cue_level=level))
            cues = pysubs2.SSAFile.from_string(data.decode(), format_=fmt)
            assert [c.plaintext for c in cues] == (["a b"] if level == "line" else ["a", "b"])


def test_json_and_csv_hold_every_timing():
    words = [
        WordTiming(word='say "hi", ok', start=0.1 + 0.2, end=0.5369999999999999, score=0.87654, interpolated=False),
        WordTiming(word="42%", start=0.6, end=0.9, score=None, interpolated=True),
        WordTiming(word="naïve", start=0.9, end=1.25, score=1.0, interpolated=False),
        WordTiming(word="§", start=1.25, end=1.3, score=float("nan"), interpolated=True),
    ]
    expected = [
        {"word": 'say "hi", ok', "start": 0.3, "end": 0.537, "score": 0.877, "interpolated": False},
        {"word": "42%", "start": 0.6, "end": 0.9, "score": None, "interpolated": True},
        {"word": "naïve", "start": 0.9, "end": 1.25, "score": 1.0, "interpolated": False},
        {"word": "§", "start": 1.25, "end": 1.3, "score": None, "interpolated": True},
    ]
    assert json.loads(build("json", words)[0].decode("utf-8")) == expected
    rows = list(csv.DictReader(io.StringIO(build("csv", words)[0].decode("utf-8"))))
    assert rows == [
        {
            "word": e["word"],
            "start": str(e["start"]),
            "end": str(e["end"]),
            "score": "" if e["score"] is None else str(e["score"]),
            "interpolated": str(e["interpolated"]).lower(),
        }
        for e in expected
    ]


# --- a real consumer: ffmpeg + libass --------------------------------------------------------------

W, H, FPS = 640, 360, 100  # one frame per 10 ms ASS tick


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed")
    return path


def render(ffmpeg: str, workdir: Path, ass: bytes | None, times: list[float], duration: float) -> list[np.ndarray]:
    """RGB frames at `times` (seconds) of a black video with `ass` burnt in by libass."""
    frames = sorted({round(t * FPS) for t in times})
    select = "select=" + "+".join(f"eq(n\\,{n})" for n in frames)
    vf = select
    if ass is not None:
        (workdir / "subs.ass").write_bytes(ass)
        vf += ",ass=subs.ass"
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"color=black:s={W}x{H}:r={FPS}:d={duration}"]
    cmd += ["-vf", vf, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, check=False)
    assert result.returncode == 0 and not result.stderr, result.stderr.decode(errors="replace")
    raw = np.frombuffer(result.stdout, np.uint8).reshape(-1, H, W, 3)
    assert len(raw) == len(frames)
    by_index = dict(zip(frames, raw, strict=True))
    return [by_index[round(t * FPS)] for t in times]


def red(frame: np.ndarray) -> int:
    r, g, b = (frame[..., c].astype(int) for c in range(3))
    return int(((r > 150) & (g < 80) & (b < 80)).sum())


def test_libass_renders_the_karaoke_in_time_with_the_speech(speech, ffmpeg, tmp_path):
    audio, sr, words = speech
    duration = len(audio) / sr
    data, _ = build(
        "ass",
        words,
        SubtitleOptions(primary_colour="#0000FF", highlight_colour="#FF0000", outline=0, shadow=0),
        duration,
    )
    # Probe times come from the ground truth, not from the file: this checks what a viewer sees.
    event_of = [n for _, n, _ in highlights(pysubs2.SSAFile.from_string(data.decode()))]
    mids = [(w["start"] + w["end"]) / 2 for w in words]
    switches = [w["start"] for i, w in enumerate(words) if i and event_of[i] == event_of[i - 1]]
    in_pause = words[AFTER_PAUSE]["start"] - 0.5
    probes = [*mids, *(t - 0.02 for t in switches), *(t + 0.02 for t in switches), in_pause]

    shown = dict(zip(probes, render(ffmpeg, tmp_path, data, probes, duration), strict=True))
    blank = dict(zip(probes, render(ffmpeg, tmp_path, None, probes, duration), strict=True))

    for w, mid in zip(words, mids, strict=True):
        assert not np.array_equal(shown[mid], blank[mid]), f"nothing drawn while {w['word']!r} is spoken"
        assert red(shown[mid]) > 0, f"{w['word']!r} not highlighted at its midpoint"
    for t in switches:
        # 20 ms before a word starts it is not highlighted yet; 20 ms after, it is.
        assert red(shown[t + 0.02]) > red(shown[t - 0.02]), f"highlight does not switch on at {t:.3f} s"
    assert np.array_equal(shown[in_pause], blank[in_pause]), "text left on screen during a long pause"


def test_libass_shows_braces_instead_of_hiding_the_word(ffmpeg, tmp_path):
    def ink_columns(word: str) -> np.ndarray:
        data, _ = build("ass", words_from([(word, 0.0, 0.5)]), SubtitleOptions(outline=0, shadow=0))
        (frame,) = render(ffmpeg, tmp_path, data, [0.25], 1.0)
        return np.flatnonzero(frame.max(axis=(0, 2)) > 128)

    plain, braced = ink_columns("hidden"), ink_columns("{hidden}")
    assert plain.size and braced.size, "libass swallowed the word as an override tag"
    assert braced.max() - braced.min() > plain.max() - plain.min(), "braces not drawn"
    backslashed = ink_columns("a\\Nb")
    one_line = ink_columns("aNb")
    assert backslashed.max() - backslashed.min() > one_line.max() - one_line.min(), "backslash not drawn"
