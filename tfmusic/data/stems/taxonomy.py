"""The one instrument taxonomy of tfmusic and the one table that maps dataset labels onto it.

Targets are the six IASS instruments plus ``other``. MedleyDB / Mixing Secrets stem labels
(``LABEL_TABLE``) and file-name keywords of plain multitrack folders (``FILENAME_KEYWORDS``) are
mapped here and nowhere else.

Unknown-label policy (explicit, chosen by the caller):
  * ``"other"`` (default): an unknown label becomes ``other`` and is counted as unknown;
  * ``"reject"``: the stem is rejected (reported with its file and label).
"""

from __future__ import annotations

import re
from typing import Iterable

VOCALS = "vocals"
DRUMS = "drums"
BASS = "bass"
ELECTRIC_GUITAR = "electric_guitar"
ACOUSTIC_GUITAR = "acoustic_guitar"
PIANO = "piano"
OTHER = "other"

#: Order is fixed: TFRecord features, manifests and model heads index instruments by it.
INSTRUMENTS: tuple[str, ...] = (VOCALS, DRUMS, BASS, ELECTRIC_GUITAR, ACOUSTIC_GUITAR, PIANO, OTHER)
#: The six separation targets of IASS (Hung & Lerch 2020).
IASS_INSTRUMENTS: tuple[str, ...] = (VOCALS, DRUMS, BASS, ELECTRIC_GUITAR, PIANO, ACOUSTIC_GUITAR)
#: MUSDB18 stem names (all but ``other`` are taxonomy names already).
MUSDB_STEMS: tuple[str, ...] = (VOCALS, DRUMS, BASS, OTHER)

UNKNOWN_POLICIES = ("other", "reject")

# --- MedleyDB / Mixing-Secrets instrument labels -> taxonomy ---------------------------------
# Keys are normalized (lower case, single spaces). Labels of MedleyDB's instrument taxonomy plus the
# spellings found in converted Mixing Secrets metadata.
_TABLE_SOURCE: dict[str, tuple[str, ...]] = {
    VOCALS: (
        "female singer", "male singer", "vocalists", "vocalist", "singer", "choir", "vocals", "vocal",
        "voice", "lead vocals", "backing vocals", "male speaker", "female speaker", "male rapper",
        "female rapper", "rapper", "speaker", "beatboxing", "humming", "whistling vocal",
    ),
    DRUMS: (
        "drum set", "drums", "drum kit", "kick drum", "bass drum", "snare drum", "toms", "tom-tom",
        "high hat", "hi-hat", "hihat", "cymbal", "cymbals", "overheads", "drum machine",
    ),
    BASS: ("electric bass", "double bass", "bass", "bass guitar", "bass synthesizer", "synth bass", "upright bass"),
    ELECTRIC_GUITAR: (
        "distorted electric guitar", "clean electric guitar", "electric guitar", "lap steel guitar",
        "steel guitar", "guitar",
    ),
    ACOUSTIC_GUITAR: ("acoustic guitar", "classical guitar", "nylon guitar", "steel-string guitar"),
    PIANO: ("piano", "electric piano", "tack piano", "grand piano", "upright piano", "keyboard", "rhodes", "wurlitzer"),
    OTHER: (
        "synthesizer", "fx/processed sound", "sampler", "scratches", "organ", "pipe organ", "harmonium",
        "accordion", "harmonica", "melodica", "violin", "viola", "cello", "string section", "violin section",
        "viola section", "cello section", "strings", "flute", "piccolo", "alto flute", "bamboo flute", "dizi",
        "clarinet", "bass clarinet", "oboe", "english horn", "bassoon", "saxophone", "alto saxophone",
        "tenor saxophone", "baritone saxophone", "soprano saxophone", "trumpet", "cornet", "trombone",
        "bass trombone", "french horn", "horn section", "brass section", "trumpet section", "trombone section",
        "tuba", "euphonium", "flute section", "clarinet section", "woodwind section", "harp", "glockenspiel",
        "vibraphone", "marimba", "xylophone", "celesta", "chimes", "tubular bells", "timpani", "gong",
        "tabla", "bongo", "conga", "tambourine", "shaker", "cabasa", "claps", "cowbell", "triangle",
        "auxiliary percussion", "darbuka", "doumbek", "cajon", "castanet", "guiro", "snaps", "sleigh bells",
        "erhu", "guzheng", "yangqin", "zhongruan", "liuqin", "pipa", "sitar", "oud", "banjo", "mandolin",
        "ukulele", "dulcimer", "kalimba", "whistle", "theremin", "crowd", "clean synth", "synth pad",
        "string synth", "lead synth", "pad",
    ),
}

LABEL_TABLE: dict[str, str] = {label: inst for inst, labels in _TABLE_SOURCE.items() for label in labels}


class UnknownLabelError(ValueError):
    """A dataset label that the taxonomy table does not know (under the ``reject`` policy)."""


def normalize_label(label: str) -> str:
    """Lower case, underscores as spaces, single spaces: the key form of ``LABEL_TABLE``."""
    return re.sub(r"\s+", " ", str(label).replace("_", " ").strip().lower())


def lookup_label(label: str) -> str | None:
    """The taxonomy instrument of a dataset label, or None when the table does not know it."""
    key = normalize_label(label)
    if key in INSTRUMENTS:
        return key
    if key.replace(" ", "_") in INSTRUMENTS:
        return key.replace(" ", "_")
    return LABEL_TABLE.get(key)


def map_label(label: str | Iterable[str], policy: str = "other") -> tuple[str | None, bool]:
    """Map a label (or MedleyDB's list of labels for one stem) under ``policy``.

    Returns ``(instrument or None, was_unknown)``. With a list, the first known label wins.
    """
    if policy not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown-label policy must be one of {UNKNOWN_POLICIES}, got {policy!r}")
    labels = [label] if isinstance(label, str) else list(label)
    for item in labels:
        inst = lookup_label(item)
        if inst is not None:
            return inst, False
    return (OTHER if policy == "other" else None), True


# --- file-name keywords for plain multitrack folders (Mixing Secrets downloads) --------------
# Names are split into lower-case tokens ("01_ElecGtr2DI.wav" -> elec, gtr, di). Rules are tried
# in order; the first whose tokens all occur in the name wins. Drums come before bass so that
# "BassDrum" is a drum, and the guitar qualifiers before plain "gtr".
FILENAME_KEYWORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("bass", "drum"), DRUMS),
    (("kick",), DRUMS), (("kik",), DRUMS), (("snare",), DRUMS), (("snr",), DRUMS), (("tom",), DRUMS),
    (("toms",), DRUMS), (("hat",), DRUMS), (("hihat",), DRUMS), (("hh",), DRUMS), (("oh",), DRUMS),
    (("ohl",), DRUMS), (("ohr",), DRUMS), (("overhead",), DRUMS), (("overheads",), DRUMS),
    (("cymbal",), DRUMS), (("cymbals",), DRUMS), (("ride",), DRUMS), (("crash",), DRUMS),
    (("drum",), DRUMS), (("drums",), DRUMS), (("kit",), DRUMS), (("room",), DRUMS), (("rooms",), DRUMS),
    (("vox",), VOCALS), (("vocal",), VOCALS), (("vocals",), VOCALS), (("voc",), VOCALS), (("vocs",), VOCALS),
    (("voice",), VOCALS), (("sing",), VOCALS), (("singer",), VOCALS), (("choir",), VOCALS),
    (("bv",), VOCALS), (("bvs",), VOCALS), (("bvox",), VOCALS), (("harmony",), VOCALS), (("rap",), VOCALS),
    (("ac", "gtr"), ACOUSTIC_GUITAR), (("acc", "gtr"), ACOUSTIC_GUITAR), (("acoustic", "gtr"), ACOUSTIC_GUITAR),
    (("acoustic", "guitar"), ACOUSTIC_GUITAR), (("acgtr",), ACOUSTIC_GUITAR), (("acguitar",), ACOUSTIC_GUITAR),
    (("nylon",), ACOUSTIC_GUITAR),
    (("elec", "gtr"), ELECTRIC_GUITAR), (("electric", "gtr"), ELECTRIC_GUITAR),
    (("electric", "guitar"), ELECTRIC_GUITAR), (("elecgtr",), ELECTRIC_GUITAR), (("egtr",), ELECTRIC_GUITAR),
    (("bass",), BASS), (("bss",), BASS), (("sub", "bass"), BASS),
    (("gtr",), ELECTRIC_GUITAR), (("gtrs",), ELECTRIC_GUITAR), (("guitar",), ELECTRIC_GUITAR),
    (("guitars",), ELECTRIC_GUITAR), (("lead", "gtr"), ELECTRIC_GUITAR),
    (("piano",), PIANO), (("pno",), PIANO), (("pianos",), PIANO), (("keys",), PIANO), (("rhodes",), PIANO),
    (("wurli",), PIANO), (("wurlitzer",), PIANO), (("epiano",), PIANO),
    (("synth",), OTHER), (("synths",), OTHER), (("pad",), OTHER), (("organ",), OTHER), (("strings",), OTHER),
    (("str",), OTHER), (("violin",), OTHER), (("cello",), OTHER), (("viola",), OTHER), (("brass",), OTHER),
    (("horn",), OTHER), (("horns",), OTHER), (("sax",), OTHER), (("trumpet",), OTHER), (("tpt",), OTHER),
    (("trombone",), OTHER), (("flute",), OTHER), (("perc",), OTHER), (("shaker",), OTHER),
    (("tamb",), OTHER), (("tambourine",), OTHER), (("conga",), OTHER), (("bongo",), OTHER),
    (("fx",), OTHER), (("sfx",), OTHER), (("clap",), OTHER), (("claps",), OTHER), (("accordion",), OTHER),
    (("harmonica",), OTHER), (("mandolin",), OTHER), (("banjo",), OTHER), (("other",), OTHER),
)


def filename_tokens(name: str) -> list[str]:
    """Lower-case word tokens of a file name: splits on non-letters and camelCase boundaries."""
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", name)
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", stem)
    return [w.lower() for w in words]


def instrument_from_filename(name: str) -> str | None:
    """Taxonomy instrument guessed from a file name's keywords, or None when no rule matches."""
    tokens = filename_tokens(name)
    joined = "".join(tokens)
    exact = lookup_label(" ".join(tokens))
    if exact is not None:
        return exact
    token_set = set(tokens)
    for keywords, inst in FILENAME_KEYWORDS:
        if all(k in token_set for k in keywords):
            return inst
    if joined in INSTRUMENTS:
        return joined
    return None


def describe_table() -> str:
    """A human-readable dump of the label table (used by ``tfmusic data inspect --taxonomy``)."""
    lines = []
    for inst in INSTRUMENTS:
        labels = sorted(label for label, target in LABEL_TABLE.items() if target == inst)
        lines.append(f"{inst}: {', '.join(labels)}")
    return "\n".join(lines)
