"""The Python API for notebooks: an ensemble loaded once that predicts and evaluates as the `predict`
and `evaluate` commands do (same windows, features, soft vote and metrics: their code, called here).

    from mosquito_ast import Ensemble

    ensemble = Ensemble.load("runs/best")            # a folder of members, one member, or a list of folders
    table = ensemble.predict(["clip.wav", "recordings/"])  # path x (label, confidence, one column per class)
    windows = ensemble.predict("recording.wav", windows=True)  # one row per window, with its start and end
    evaluation = ensemble.evaluate("data/validation")    # the EnsembleEvaluation `evaluate` computes
    ensemble.members[0].save_pretrained("hf/member")     # a transformers folder

Importing this module is instant: torch, transformers, pandas and scikit-learn are imported by the methods
that need them, the first time an ensemble is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mosquito_ast_lite.runtime import expand_inputs

from .checkpoints import model_folders
from .config import EvaluateParams, PredictParams

if TYPE_CHECKING:
    import pandas as pd

    from .api_member import EnsembleMember
    from .evaluation.results import EnsembleEvaluation
    from .inference.forest import ForestMember
    from .inference.members import Member

__all__ = ["Ensemble"]

Paths = str | Path | Sequence[str | Path]
SHOWN_NAMES = 6  # names `repr` lists before it counts the rest


def listed(names: Sequence[str]) -> str:
    """Names for `repr`: the first few, then how many more, so a sweep of fifty members stays one line."""
    shown = ", ".join(names[:SHOWN_NAMES]) or "none"
    return shown + (f", ... ({len(names) - SHOWN_NAMES} more)" if len(names) > SHOWN_NAMES else "")


class Ensemble:
    """The members of one or several folders, with the class order of every table they return.

    >>> ensemble = Ensemble.load(["sweep-a/best", "sweep-b/best"])  # doctest: +SKIP
    >>> ensemble.labels, [member.name for member in ensemble.members]  # doctest: +SKIP
    """

    def __init__(self, members: Sequence[Member], models: Paths, old_labels: Sequence[str] | None = None,
                 forests: Sequence[ForestMember] = ()) -> None:
        from dataclasses import fields

        from .api_member import EnsembleMember

        self.members: list[EnsembleMember] = [EnsembleMember(**{f.name: getattr(m, f.name) for f in fields(m)})
                                              for m in members]
        self.forests = list(forests)  # the spectrum forests (`ensemble.forest`), voting beside the members
        self.models = [str(folder) for folder in model_folders(models)]
        self.old_labels = list(old_labels) if old_labels else None

    @classmethod
    def load(cls, models: Paths, old_labels: Sequence[str] | None = None) -> Ensemble:
        """Every member and spectrum forest under `models` (a folder searched recursively, or a list of them),
        as `--models` finds them; `old_labels` are the old id order old-notebook members need (`--labels`).

        >>> ensemble = Ensemble.load("runs/best")  # doctest: +SKIP
        """
        from .inference.forest import load_forests
        from .inference.members import ensemble_labels, load_members

        members = load_members(models, old_labels)
        return cls(members, models, old_labels, load_forests(models, ensemble_labels(members)))

    @property
    def labels(self) -> list[str]:
        """Class names, in the column order of `predict`'s probabilities."""
        from .inference.members import ensemble_labels

        return ensemble_labels(self.members)

    def predict(self, paths: Paths, windows: bool = False, **options: Any) -> pd.DataFrame:
        """The soft vote per file, as `predict` writes it to its per-file CSV: index `path`, columns `label`,
        `confidence` and one probability per class (recordings longer than a clip are windowed and pooled).
        `windows=True` returns the windows instead, as `predict` writes them to `<name>_windows.csv`: one row
        per window (`path`, `start_s`, `end_s`, `presence_db`, `label`, `confidence`, one probability per
        class; `no detection` where the presence gate found no flight tone). Folders are searched for audio;
        unreadable files are left out with a warning. `options` are `predict`'s parameters (hop_seconds,
        min_confidence, presence_db, detections_only, weights, batch_size, precision, ...). Members
        are cast once to the precision of their first use; for another one, load the ensemble again.

        >>> ensemble.predict("recordings/").sort_values("confidence")  # doctest: +SKIP
        >>> ensemble.predict("recording.wav", windows=True, hop_seconds=0.5)  # doctest: +SKIP
        """
        from .commands.predict import check_one_window_length, predict_files

        inputs = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]
        files = expand_inputs(inputs)
        if not files:
            raise FileNotFoundError(f"no audio files found in {', '.join(inputs) or 'an empty list of paths'}")
        params = PredictParams(inputs=inputs, models=self.models, labels=self.old_labels,
                               **{"progress": False, **options})
        forests = self.forests if params.spectrum_forest else []
        check_one_window_length([*self.members, *forests])
        predictions = predict_files(self.members, files, params, forests)
        if windows:
            return predictions.windows
        table = predictions.files
        return table[table["error"] == ""].set_index("path")[["label", "confidence", *self.labels]]

    def evaluate(self, data_dir: str | Path, **options: Any) -> EnsembleEvaluation:
        """Members, votes and baselines scored on the labelled clips in `data_dir` (a folder-per-class tree
        or a manifest CSV), exactly as `evaluate` computes them; `options` are its parameters (weights,
        bootstrap, group_by, ...). `report.write_outputs(result)` writes the command's files.

        >>> ensemble.evaluate("data/validation").summary  # doctest: +SKIP
        """
        from .commands.evaluate import evaluate

        params = EvaluateParams(models=self.models, data=str(data_dir), labels=self.old_labels,
                                **{"progress": False, **options})
        return evaluate(params, self.members, self.forests if params.spectrum_forest else [])

    def __repr__(self) -> str:
        """What was loaded, in a few lines: members, spectrum forests, classes and the folders searched."""
        return "\n".join([
            f"Ensemble({len(self.members)} members, {len(self.forests)} spectrum forests, {len(self.labels)} labels)",
            f"  members: {listed([m.name for m in self.members])}",
            f"  spectrum forests: {listed([f.name for f in self.forests])}",
            f"  labels: {listed(self.labels)}",
            f"  models: {listed(self.models)}"])
