"""Cross-fit datasets of a sweep: `{data: DIR, session_folds: K}` becomes K datasets `<name>-fold<k>`,
each training on the other folds' recording sessions and scored on its own (see `spec`). The members of all
folds together are the ensemble to deploy; its spectrum forest is fitted once the folds are trained, on every
session (`deploy_forest`), where each fold's own forest learned part of them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mosquito_ast_lite.io import atomic_write_text

from ..config import ConfigError
from ..data import discover
from ..sides import session_folds

CROSS_FIT_KEYS = ("data", "session_folds")


def check_cross_fit(name: str, entry: dict, source: str) -> None:
    unknown = sorted(set(entry) - set(CROSS_FIT_KEYS))
    if unknown or set(entry) != set(CROSS_FIT_KEYS):
        raise ConfigError(f"{source}: datasets: {name}: a cross-fit takes exactly data and session_folds "
                          f"(got {', '.join(sorted(entry))})")
    folds = entry["session_folds"]
    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"{source}: datasets: {name}: session_folds must be an integer >= 2, got {folds!r}")


def data_folder(entry: dict, folder: Path) -> Path:
    source = Path(entry["data"])
    return source if source.is_absolute() else folder / source


def cross_fit_datasets(name: str, entry: dict, folder: Path, output: Path, group_by: str,
                       seed: int, write: bool = True) -> dict[str, dict[str, str]]:
    """Each fold's train and scored manifests under `output/<name>-fold<k>/` (written only with `write`: a
    dry run writes nothing); returns the datasets."""
    samples = discover(data_folder(entry, folder), group_by)
    datasets = {}
    for k, sides in enumerate(session_folds(samples, entry["session_folds"], seed), start=1):
        fold = f"{name}-fold{k}"
        paths = {}
        for side in ("train", "validation"):
            rows = [s for s, own in zip(samples, sides) if own == side]
            table = pd.DataFrame({"path": [s.path for s in rows], "label": [s.label for s in rows],
                                  "group": [s.group for s in rows]})
            paths[side] = str(output / fold / f"{side}.csv")
            if write:
                atomic_write_text(Path(paths[side]), table.to_csv(index=False))
        datasets[fold] = paths
    return datasets


def deploy_forest(name: str, entry: dict, folder: Path, output: Path, group_by: str, fold_forests: list[Path],
                  cache_dir: str | None, no_cache: bool) -> Path | None:
    """The cross-fit's spectrum forest on every clip of its data, at `output/<name>/spectrum-forest`, with the
    settings and share of its folds' forests (None where the folds fitted none). Loading the whole sweep
    (`predict --models OUTPUT`) takes it instead of the folds' (the nearest forest counts,
    `inference.forest.find_forest_folders`); each fold's evaluation keeps its own."""
    from ..features import FeatureCache
    from ..inference.forest import FOREST_FOLDER, is_forest_folder
    from ..training.spectrum_forest import forest_like

    fitted = [forest for forest in fold_forests if is_forest_folder(forest)]
    if not fitted:
        return None
    cache = None if no_cache else FeatureCache(cache_dir)
    return forest_like(fitted[0], discover(data_folder(entry, folder), group_by), cache, output / name / FOREST_FOLDER)
