"""Booking values as people say them: party sizes and nights, days, clock times.

The NLU's tagger finds *where* a booking detail is ("table for 2", "tmrw", "half past seven"); these
functions say *what* it is, in the domain's stored form (digits, a weekday, ``HH:MM``). Days resolve
against the conversation's clock ("tonight" is today's weekday). Restaurant times without am/pm are
read as the afternoon or evening ("at 7" is 19:00), as a booking desk reads them. ``dateparser`` is
the fallback for days the rules do not know ("in three days", "the 5th").
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from dialogue.domain import WEEKDAYS

NUMBER_WORDS = {
    "one": 1, "a": 1, "an": 1, "single": 1, "two": 2, "couple": 2, "pair": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
}  # fmt: skip
_ALONE = re.compile(r"\b(just me|only me|myself|me alone|alone|solo|on my own|by myself|1 person|one person)\b")
_PAIR = re.compile(r"\b(us two|the two of us|me and (?:my|a) \w+|my \w+ and (?:i|me)|a couple)\b")
_COMPANIONS = re.compile(
    r"\b(?:me|myself|i)\s*(?:\+|and|&|plus|with)\s*(\d+|"
    + "|".join(w for w in NUMBER_WORDS if w not in ("a", "an", "single", "couple", "pair"))
    + r")\s+(?:friends|mates|others|colleagues|people|more|kids|guests|pals)\b"
)
_DURATIONS = {"weekend": 2, "fortnight": 14, "week": 7}  # "weekend" before "week"
_DAY_ABBREVIATIONS = {
    "mon": "monday", "tue": "tuesday", "tues": "tuesday", "wed": "wednesday", "weds": "wednesday",
    "thu": "thursday", "thur": "thursday", "thurs": "thursday", "fri": "friday", "sat": "saturday",
    "sun": "sunday",
}  # fmt: skip
_TODAY = re.compile(r"\b(today|tonight|tonite|this evening|this afternoon|this morning|later today)\b|(?<!for )\bnow\b")
_TOMORROW = re.compile(r"\b(tomorrow|tomorow|tommorow|tommorrow|tmrw|tmr|tmrow|2moro|2morrow)\b")
_HOUR_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip


def parse_count(text: str) -> int | None:
    """A party size or number of nights: "4 ppl", "for two", "just me", "a week", "the weekend"."""
    low = text.lower()
    others = _COMPANIONS.search(low)
    if others:  # "me + 3 friends", "me and three mates": the speaker counts too
        n = others.group(1)
        return (int(n) if n.isdigit() else NUMBER_WORDS[n]) + 1
    digits = re.search(r"\d+", low)
    if digits:
        return int(digits.group())
    if _PAIR.search(low):
        return 2
    if _ALONE.search(low):
        return 1
    for word, n in _DURATIONS.items():
        if word in low:
            return n
    words = re.findall(r"[a-z]+", low)
    found = [NUMBER_WORDS[w] for w in words if w in NUMBER_WORDS and w not in ("a", "an")]
    if found:
        return found[0]
    if any(w in ("a", "an", "one") for w in words) and re.search(r"\b(night|person|guest)\b", low):
        return 1
    return None


def parse_day(text: str, now: datetime) -> str | None:
    """A weekday: named ("sat", "next tuesday"), relative ("tonight", "tmrw"), or what dateparser reads."""
    low = text.lower()
    words = re.findall(r"[a-z]+", low)
    for w in words:
        for day in WEEKDAYS:
            if w in (day, day + "s") or (len(w) >= 5 and w.startswith(day[:3]) and _close(w, day)):
                return day
        if w in _DAY_ABBREVIATIONS:
            return _DAY_ABBREVIATIONS[w]
    if re.search(r"\bday after tomorrow\b", low):
        return WEEKDAYS[(now.weekday() + 2) % 7]
    if _TOMORROW.search(low):
        return WEEKDAYS[(now.weekday() + 1) % 7]
    if _TODAY.search(low):
        return WEEKDAYS[now.weekday()]
    if "weekend" in low:
        return "saturday"
    return _dateparser_day(low, now)


def _close(word: str, day: str) -> bool:
    """A misspelt weekday ("wedensday", "saturdy"): same start, nearly the same letters."""
    import difflib

    return difflib.SequenceMatcher(None, word, day).ratio() >= 0.8


def _dateparser_day(text: str, now: datetime) -> str | None:
    if not re.search(r"\d|\bin\b|\bnext\b", text):
        return None  # dateparser reads almost anything as a date; give it only what looks like one
    import dateparser

    parsed = dateparser.parse(
        text, languages=["en"], settings={"RELATIVE_BASE": now.replace(tzinfo=None), "PREFER_DATES_FROM": "future"}
    )
    if parsed is None or abs(parsed - now.replace(tzinfo=None)) > timedelta(days=366):
        return None
    return WEEKDAYS[parsed.weekday()]


def parse_time(text: str, evening: bool = True) -> str | None:
    """A clock time as HH:MM: "19:30", "7.30pm", "8ish", "half past seven", "half seven", "noon".

    ``evening``: a bare hour from 1 to 11 is in the afternoon or evening (a restaurant's bookings).
    """
    low = text.lower().replace("o'clock", "").replace("oclock", "")
    if re.search(r"\bnoon\b|\bmidday\b|\blunch ?time\b", low) and not re.search(r"\d", low):
        return "12:00"
    if "midnight" in low:
        return "00:00"
    hour: int | None = None
    minute = 0
    m = re.search(r"\b(\d{1,2})\s*[:.h]\s*(\d{2})(?!\d)", low) or re.search(r"\b([01]?\d|2[0-3])([0-5]\d)(?!\d)", low)
    if m:
        hour, minute = int(m.group(1)), int(m.group(2))
    else:
        word = r"(\d{1,2}|" + "|".join(_HOUR_WORDS) + r")"
        rel = re.search(r"\b(half|quarter|\d{1,2}|twenty|ten|five)\s+(past|after|to|til|till)\s+" + word + r"\b", low)
        half = re.search(r"\bhalf\s+" + word + r"\b", low)
        plain = re.search(r"\b" + word + r"\s*(?:ish\b|am\b|pm\b|p\.m\.|a\.m\.|in the|at night|tonight|$)", low)
        bare = re.search(r"\b(?:at|around|about|for|by|from|after|before|say|@)\s*" + word + r"\b", low)
        if rel:
            hour = _hour(rel.group(3))
            delta = {"half": 30, "quarter": 15, "twenty": 20, "ten": 10, "five": 5}.get(rel.group(1))
            delta = delta if delta is not None else int(rel.group(1))
            minute = delta if rel.group(2) in ("past", "after") else 60 - delta
            if rel.group(2) not in ("past", "after"):
                hour -= 1
        elif half:
            hour, minute = _hour(half.group(1)), 30  # British "half seven" is 7:30
        elif plain:
            hour = _hour(plain.group(1))
        elif bare:
            hour = _hour(bare.group(1))
        elif re.fullmatch(r"\s*" + word + r"\s*", low):
            hour = _hour(low.strip())
    if hour is None or not 0 <= hour <= 24 or not 0 <= minute < 60:
        return None
    pm = re.search(r"pm\b|p\.m\.|evening|night|tonight|dinner", low) is not None
    am = re.search(r"am\b|a\.m\.|morning", low) is not None
    if hour < 12 and (pm or (evening and not am and 1 <= hour <= 11)):
        hour += 12
    return f"{hour % 24:02d}:{minute:02d}"


def _hour(word: str) -> int:
    return int(word) if word.isdigit() else _HOUR_WORDS[word]
