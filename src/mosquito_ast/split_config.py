"""The parameters of the commands that make and check splits: split and check-split."""

from __future__ import annotations

from dataclasses import dataclass

from .param_groups import progress_option
from .params import DATA, OUTPUT, ConfigError, Params, option

SPLIT_MODES = ("independent", "random", "kfold")  # splits.MODES, not imported: it would load numpy for --help
TAILS = ("drop", "pad")  # segment.TAILS, likewise
GROUP_HELP = "Recording (group) of each file: auto, parent, regex:PATTERN or column:NAME."


@dataclass
class SplitParams(Params):
    """Build train/validation(/test) folder trees (independent, random or k-fold) with a manifest and a report."""

    data: str = option(None, "Labeled audio: <class>/**/<file> folder or manifest CSV (path,label[,group]).", positional=True, group=DATA, required=True)
    output: str = option(None, "Output folder; the split lands in <output>/<mode>/.", group=OUTPUT, required=True)
    mode: str = option("independent", "independent (no recording on both sides), random (groups ignored) or kfold.", SPLIT_MODES, group=DATA)
    group_by: str = option("auto", GROUP_HELP, group=DATA)
    validation_fraction: float = option(0.2, "Target share of clips in validation (independent, random); 0 = no validation side (the recipe keeps the last epoch and needs none).", group=DATA)
    test_fraction: float = option(0.0, "Target share of clips held out in <output>/<mode>/test/, whole recordings in every mode: `evaluate --data` it to score members on clips nothing was chosen on (0 = no test side).", group=DATA)
    seed: int = option(0, "Random seed; the same seed gives the same split.", group=DATA)
    folds: int = option(5, "Number of folds for --mode kfold.", group=DATA)
    copy: bool = option(False, "Copy files instead of hard-linking them.", group=OUTPUT)
    symlink: bool = option(False, "Symlink files instead of hard-linking them.", group=OUTPUT)
    overwrite: bool = option(False, "Replace an existing, non-empty split folder.", group=OUTPUT)
    clip_seconds: float | None = option(None, "Cut recordings into clips of this length first (16 kHz wav under <output>/clips/).", group=DATA)
    hop_seconds: float | None = option(None, "Step between clip starts (default: the clip length).", group=DATA)
    tail: str = option("drop", "A last clip shorter than --clip-seconds: drop or pad.", TAILS, group=DATA)
    min_rms_db: float | None = option(None, "Drop clips quieter than this RMS level in dBFS (e.g. -50).", group=DATA)
    progress: bool = progress_option()

    @property
    def link(self) -> str:
        return "copy" if self.copy else "symlink" if self.symlink else "hard"

    def validate(self) -> None:
        if self.copy and self.symlink:
            raise ConfigError("choose one of --copy and --symlink")
        if self.mode != "kfold" and not 0 <= self.validation_fraction < 1:
            raise ConfigError(f"validation_fraction: must be at least 0 and below 1, got {self.validation_fraction}")
        if not 0 <= self.test_fraction < 1:
            raise ConfigError(f"test_fraction: must be at least 0 and below 1, got {self.test_fraction}")
        if self.mode != "kfold" and self.validation_fraction + self.test_fraction >= 1:
            raise ConfigError(f"validation_fraction {self.validation_fraction} + test_fraction {self.test_fraction} "
                              f"leave no clips to train on")
        for name in ("clip_seconds", "hop_seconds"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")


@dataclass
class CheckSplitParams(Params):
    """List recordings, identical audio and re-encoded copies found on both sides; exit 1 on leakage (2 on unusable input)."""

    train_dir: str = option(None, "Training clips: folder-per-class tree or manifest CSV.", positional=True, group=DATA, required=True)
    held_out_dir: str = option(None, "Validation or test clips, same layouts; reported as the test side when the folder (or manifest) is named test.", positional=True, group=DATA, required=True)
    group_by: str = option("auto", GROUP_HELP, group=DATA)
    progress: bool = progress_option("Show progress bars while hashing audio.")
