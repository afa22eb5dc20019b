"""Cross-session quality, measured honestly: accuracy on recording sessions that chose nothing.

Folds deal each species' sessions round-robin (`splits.session_folds`): with two sessions per species
(../shared/data/wingbeats) fold 0 trains on one session and is scored on the other, fold 1 the
reverse. Per fold: `--members` members of one recipe (a `sweep` over seeds), each kept at its last
epoch (`select: last`, fixed epoch count: the scored sessions pick no epoch, no member, no recipe
value), their soft and hard votes, and the spectrum baselines (`mosquito_ast.evaluation.baselines`, fitted by
`evaluate` on the same training clips). Reported per fold and pooled ("both folds": out-of-fold
predictions of every clip); members as mean ± sd over seeds. "best member" is picked after the fact on
the scored clips and is shown only as the hindsight ceiling of a single member. The soft vote is the
heterogeneous default: `train` fits the spectrum forest beside each fold's members; "AST soft vote" is the
members' vote without it, and `quality_forest.py` adds the forest's own rows and seed spread.

`--distill`: per fold, a tiny "student" (`mosquito-ast distill`) learns from that fold's members' soft
vote on that fold's training clips (never the scored ones), and is scored beside them. With
`--distill-scored-audio` it also learns the soft vote on the scored sessions' audio, without their labels:
what a user does who distils on the unlabelled recordings of the site the device will stand at.

`--unseen DIR`: labelled sessions outside `--data` (e.g. a new site's), scored once more: every fold's
members together (the ensemble a cross-fit `sweep` deploys: together they trained on all of `--data`),
their votes, and the spectrum baselines fitted on all of `--data`; then each fold's members alone (rows
"unseen sessions, foldK only": what one train/validation split deploys), so the table also says what
training on every labelled session buys. With --distill, a student beside each: each fold's own, and one
distilled from every fold's members on all of `--data` (the student a user deploys). This is the measurement that matters
(DESIGN, "Measuring quality honestly"): nothing was chosen on those sessions.

    python benchmarks/quality.py                      # wingbeats, default recipe, 3 members per fold
    python benchmarks/quality.py --data DIR --group-by parent --members 5 --set augment=mask,roll
    python benchmarks/quality.py --distill --distill-set temperature=4   # plus a distilled student per fold
    python benchmarks/quality.py --unseen NEW_SITE_DIR --set augment=mask,mixup  # a variant on unseen sessions

`--variants FILE`: a YAML map of variant name -> `train` parameters; the recipe as it ships and each variant
run through the same folds, seeds and `--unseen` sessions, each in its own sub-folder, and one table of
them all (variants.csv, variants.md, variants.png): the way to send candidate recipes to new sessions in one command,
e.g. `--variants benchmarks/unseen_candidates.yaml --unseen NEW_SESSIONS`.

Writes quality.csv, quality.md and quality.png to --output.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from _common import cpu_model
from quality_forest import (AST_VOTE, FOREST, HYBRID, SEEDED, cross_fit_models, hybrid_labels, is_forest,
                            seeded_forest_rows)

from mosquito_ast.evaluation.baselines import BASELINES
from mosquito_ast.config import DistillParams, EvaluateParams
from mosquito_ast.data import UNLABELLED, discover, label_names
from mosquito_ast.commands.evaluate import evaluate
from mosquito_ast.evaluation.report import write_outputs as write_report
from mosquito_ast.inference.members import load_members, predict_probabilities
from mosquito_ast.evaluation.metrics import label_metrics
from mosquito_ast.sides import session_folds
from mosquito_ast.sweep import run_sweep
from mosquito_ast.sweep.spec import SweepSpec
from mosquito_ast.commands.distill import distill

WINGBEATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "wingbeats"
SYSTEMS = ("mean member", "best member", "hard vote", "soft vote", SEEDED, AST_VOTE, HYBRID, FOREST, "student",
           *BASELINES)
METRICS = ("balanced_accuracy", "accuracy", "f1_macro")


def write_manifest(path: Path, samples) -> Path:
    pd.DataFrame({"path": [s.path for s in samples], "label": [s.label for s in samples],
                  "group": [s.group for s in samples]}).to_csv(path, index=False)
    return path


def system_rows(fold: str, y_true: np.ndarray, predicted: dict[str, np.ndarray], k: int) -> list[dict]:
    rows = []
    for system, labels in predicted.items():
        metrics = label_metrics(y_true, labels, k)
        rows.append({"fold": fold, "system": system, **{m: metrics[m] for m in METRICS}})
    return rows


def fold_rows(fold: str, y_true: np.ndarray, systems: dict[str, np.ndarray], k: int) -> list[dict]:
    """Votes and baselines as they are; members as mean ± sd over seeds, and the hindsight best member."""
    members = pd.DataFrame(system_rows(fold, y_true, {s: p for s, p in systems.items() if s not in SYSTEMS}, k))
    spread = {f"{m}_sd": members[m].std(ddof=0) for m in METRICS}
    best = members.sort_values("balanced_accuracy").iloc[-1]
    return [{"fold": fold, "system": "mean member", **members[list(METRICS)].mean().to_dict(), **spread},
            {"fold": fold, "system": "best member", **{m: best[m] for m in METRICS}},
            *system_rows(fold, y_true, {s: systems[s] for s in SYSTEMS if s in systems}, k)]


def member_and_vote_labels(predictions: pd.DataFrame, labels: list[str]) -> dict[str, np.ndarray]:
    """Predicted class ids per system from an evaluation's predictions table; the spectrum forest member
    is named FOREST, so it is not counted among the AST members."""
    index = {name: i for i, name in enumerate(labels)}
    systems = [c[: -len(":label")] for c in predictions.columns if c.endswith(":label")]
    return {FOREST if is_forest(s) else s: predictions[f"{s}:label"].map(index).to_numpy() for s in systems}


def system_labels(evaluation, labels: list[str]) -> dict[str, np.ndarray]:
    """Class ids of every member, vote, baseline and hybrid vote of an evaluation."""
    return {**member_and_vote_labels(evaluation.predictions, labels), **hybrid_labels(evaluation, labels)}


def distil_student(args: argparse.Namespace, output: Path, name: str, teachers: list[Path], train_manifest: str,
                   scored_manifest: Path | None = None) -> tuple[list, DistillParams]:
    """A tiny student distilled from `teachers` on `train_manifest`'s clips (and, with --distill-scored-audio,
    the audio of `scored_manifest`'s clips, unlabelled)."""
    if args.distill_scored_audio and scored_manifest:
        frame = pd.concat([pd.read_csv(train_manifest, keep_default_na=False),
                           pd.read_csv(scored_manifest, keep_default_na=False).assign(label=UNLABELLED)])
        train_manifest = str(output / f"{name}_train_and_scored_audio.csv")
        frame.to_csv(train_manifest, index=False)
    options = {"models": [str(t) for t in teachers], "data": train_manifest,
               "output": str(output / "students" / name), "precision": args.precision, "progress": False,
               "cache_dir": cache_dir(args), "group_by": args.group_by, "overwrite": True}
    for item in args.distill_set:
        key, value = item.split("=", 1)
        options[key] = value
    params = DistillParams(**options)
    return load_members(distill(params)), params


def student_labels(student: tuple[list, DistillParams], paths: list[str], labels: list[str]) -> np.ndarray:
    """The student's class ids on `paths`, in `labels`' order."""
    members, params = student
    predicted = predict_probabilities(members, paths, params, progress=False)
    assert predicted.paths == list(paths), "the student could not read every scored clip"
    index = [labels.index(name) for name in members[0].labels]
    return np.asarray(index)[predicted.probabilities[0].argmax(axis=1)]


def cache_dir(args: argparse.Namespace) -> str:
    """One feature cache for every variant of a run."""
    return str(Path(args.cache_dir or Path(args.output) / "cache").resolve())


def load_variants(path: str) -> dict[str, list[str]]:
    """Variant name -> `KEY=VALUE` items (as --set takes them) from a YAML map of maps."""
    loaded = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise SystemExit(f"{path}: expected a map of variant name -> map of train parameters")
    return {str(name): [f"{key}={as_option(value)}" for key, value in values.items()] for name, values in loaded.items()}


def as_option(value) -> str:
    """A YAML value as --set writes it: lists comma-separated."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def run_variants(args: argparse.Namespace) -> pd.DataFrame:
    """The recipe and every variant of `--variants` on the same folds, seeds and unseen sessions."""
    output = Path(args.output).resolve()
    variants = {"recipe": [], **load_variants(args.variants)}
    tables = []
    for name, items in variants.items():
        print(f"\n=== variant {name}: {' '.join(items) or 'the recipe as it ships'}")
        folder = output / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "variant")
        options = argparse.Namespace(**{**vars(args), "output": str(folder), "set": [*args.set, *items],
                                        "cache_dir": cache_dir(args)})
        tables.append(run(options).assign(variant=name, parameters=" ".join(items)))
    combined = pd.concat(tables, ignore_index=True)
    combined.to_csv(output / "variants.csv", index=False)
    recipe_baselines = (combined["variant"] == "recipe") & combined["system"].isin(BASELINES)  # alike in every variant
    shown = combined[combined["system"].isin(["mean member", "soft vote"]) | recipe_baselines]
    pivot = shown.pivot_table(index=["variant", "system"], columns="fold", values="balanced_accuracy", sort=False)
    header = (f"Balanced accuracy by variant ({args.members} members per fold, last epoch; {cpu_model()}); "
              f"sd over seeds of the mean member in variants.csv\n\n")
    (output / "variants.md").write_text(header + markdown(pivot.reset_index()) + "\n")
    plot_variants(combined, output / "variants.png", recipe_baselines)
    print("\n" + header + pivot.round(3).to_string())
    print(f"-> {output / 'variants.csv'}, {output / 'variants.md'}, {output / 'variants.png'}")
    return combined


def plot_variants(combined: pd.DataFrame, path: Path, baselines: pd.Series) -> None:
    """Soft vote per variant and fold, the recipe's line and the best baseline's to read them against."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    votes = combined[combined["system"] == "soft vote"].pivot_table(index="variant", columns="fold",
                                                                   values="balanced_accuracy", sort=False)
    best_baseline = combined[baselines].groupby("fold")["balanced_accuracy"].max()  # none on "foldK only" rows
    folds = list(votes.columns)
    figure = Figure(figsize=(4 + 2 * len(folds), 1.2 + 0.35 * len(votes)))
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, len(folds), sharey=True, squeeze=False)[0]
    for axes, fold in zip(panels, folds):
        axes.barh(range(len(votes)), votes[fold], color=["tab:blue" if v == "recipe" else "tab:gray" for v in votes.index])
        axes.axvline(votes.loc["recipe", fold], color="tab:blue", linestyle="--", linewidth=1, label="recipe")
        if fold in best_baseline.index:
            axes.axvline(best_baseline[fold], color="tab:red", linestyle=":", linewidth=1, label="best baseline")
        axes.set_title(fold, fontsize=9)
        axes.set_xlabel("soft vote balanced accuracy", fontsize=8)
    panels[0].set_yticks(range(len(votes)), votes.index, fontsize=8)
    panels[0].invert_yaxis()  # shared: the recipe on top in every panel
    panels[0].legend(loc="lower right", fontsize=7)  # the first panel (a 2-fold fold) draws both lines
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def run(args: argparse.Namespace) -> pd.DataFrame:
    started = time.perf_counter()
    output = Path(args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    samples = discover(args.data, args.group_by)
    labels = label_names(samples)
    k = len(labels)
    if args.unseen:
        check_unseen(args, samples, labels)
    sides = session_folds(samples, args.folds, args.seed)
    base = {"preset": args.preset, "select": "last", "precision": args.precision, "progress": False,
            "cache_dir": cache_dir(args), "clip_seconds": args.clip_seconds, "group_by": args.group_by}
    for item in args.set:
        key, value = item.split("=", 1)
        base[key] = value
    datasets = {}
    for fold, fold_sides in enumerate(sides):
        train = [s for s, side in zip(samples, fold_sides) if side == "train"]
        scored = [s for s, side in zip(samples, fold_sides) if side == "validation"]
        assert not {s.group for s in train} & {s.group for s in scored}
        datasets[f"fold{fold}"] = {"train": str(write_manifest(output / f"fold{fold}_train.csv", train)),
                                   "validation": str(write_manifest(output / f"fold{fold}_scored.csv", scored))}
    spec = SweepSpec.from_dict({"base": base, "grid": {"seed": list(range(1, args.members + 1))},
                                "datasets": datasets, "postfix": "seed{seed}"}, output, "quality")
    outcome = run_sweep(spec, output / "members", parallel=args.parallel)
    if outcome.failed:
        raise SystemExit(f"{outcome.failed} member runs failed; see {output / 'members' / 'sweep_summary.csv'}")

    rows, pooled_truth, pooled, students = [], [], {}, {}
    for fold in range(len(sides)):
        name = f"fold{fold}"
        evaluation = evaluate(EvaluateParams(models=str(output / "members" / name / "best"),
                                             data=datasets[name]["validation"], output=str(output / name),
                                             precision=args.precision, cache_dir=cache_dir(args),
                                             bootstrap=0, progress=False, group_by=args.group_by, seed=args.seed))
        write_report(evaluation)
        y_true = evaluation.predictions["true_label"].map(labels.index).to_numpy()
        systems = system_labels(evaluation, labels)
        if args.distill:
            students[name] = distil_student(args, output, name, [output / "members" / name / "best"],
                                            datasets[name]["train"], Path(datasets[name]["validation"]))
            systems["student"] = student_labels(students[name], list(evaluation.predictions["path"]), labels)
        rows += fold_rows(name, y_true, systems, k) + seeded_forest_rows(name, evaluation, datasets[name]["train"],
                                                                         labels, args.group_by, cache_dir(args))
        pooled_truth.append(y_true)
        for system, predicted in systems.items():
            pooled.setdefault(system, []).append(predicted)
    y_all = np.concatenate(pooled_truth)
    both = {s: np.concatenate(v) for s, v in pooled.items() if len(v) == len(sides)}
    rows += fold_rows("both folds", y_all, both, k)
    if args.unseen:
        fold_members = [output / "members" / f"fold{f}" / "best" for f in range(len(sides))]
        if args.distill:  # the student a user deploys: every member's vote on every clip of --data
            students["all folds"] = distil_student(args, output, "all-folds", fold_members,
                                                   str(write_manifest(output / "all_train.csv", samples)))
        rows += unseen_rows(args, output, fold_members, labels, students)
    table = pd.DataFrame(rows)
    write_outputs(table, output, args, time.perf_counter() - started)
    return table


def check_unseen(args: argparse.Namespace, samples: list, labels: list[str]) -> None:
    """Refuse, before any training, unseen sessions that are not unseen or hold classes --data lacks."""
    unseen = discover(args.unseen, args.group_by)
    shared = sorted({s.group for s in samples} & {s.group for s in unseen})
    if shared:
        raise SystemExit(f"{args.unseen}: {len(shared)} recording(s) also in --data ({', '.join(shared[:3])}"
                         f"{', ...' if len(shared) > 3 else ''}); unseen sessions must lie outside it")
    unknown = sorted({s.label for s in unseen} - set(labels))
    if unknown:
        raise SystemExit(f"{args.unseen}: classes not in --data: {', '.join(unknown)}")


def unseen_rows(args: argparse.Namespace, output: Path, member_folders: list[Path], labels: list[str],
                students: dict[str, tuple[list, DistillParams]]) -> list[dict]:
    """All folds' members as one ensemble on `--unseen` (the cross-fit ensemble: between them they trained on
    every session of `--data`; `evaluate` fits the baselines on the union of their training clips, all of
    `--data`) beside the student distilled from all of them on all of `--data` (with --distill), then each
    fold's members alone, as a single train/validation split would deploy them, beside that fold's student."""
    rows = []
    for name, folders in [("unseen sessions", cross_fit_models(args.data, args.group_by, cache_dir(args), output, member_folders)),
                          *((f"unseen sessions, {f.parent.name} only", [f]) for f in member_folders)]:
        evaluation = evaluate(EvaluateParams(models=[str(f) for f in folders], data=args.unseen,
                                             output=str(output / name.replace(", ", "-").replace(" ", "-")),
                                             precision=args.precision, cache_dir=cache_dir(args), bootstrap=0,
                                             progress=False, group_by=args.group_by, seed=args.seed))
        write_report(evaluation)
        y_true = evaluation.predictions["true_label"].map(labels.index).to_numpy()
        systems = system_labels(evaluation, labels)
        whole = name == "unseen sessions"
        student = students.get("all folds" if whole else folders[0].parent.name)
        if student:
            systems["student"] = student_labels(student, list(evaluation.predictions["path"]), labels)
        found = fold_rows(name, y_true, systems, len(labels))
        rows += found if whole else [r for r in found if r["system"] in ("mean member", "soft vote", AST_VOTE, FOREST,
                                                                          "student")]
    return rows


def markdown(table: pd.DataFrame) -> str:
    cells = table.round(3).map(lambda value: "" if pd.isna(value) else str(value))
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)


def write_outputs(table: pd.DataFrame, output: Path, args: argparse.Namespace, seconds: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table.to_csv(output / "quality.csv", index=False)
    student = (f"; student: tiny, distilled per fold ({', '.join(args.distill_set) or 'distill defaults'})"
               if args.distill else "")
    header = (f"Cross-session benchmark on {args.data} ({args.preset}, {args.members} members per fold, "
              f"seed {args.seed}{student}); {cpu_model()}, {seconds / 60:.1f} min\n\n")
    (output / "quality.md").write_text(header + markdown(table) + "\n")
    pivot = table.pivot(index="system", columns="fold", values="balanced_accuracy")
    order = [s for s in SYSTEMS if s in pivot.index]
    figure = Figure(figsize=(9, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    pivot.loc[order].plot.barh(ax=axes)
    axes.axvline(1 / len(label_names(discover(args.data, args.group_by))), color="grey", linestyle=":", label="chance")
    axes.set_xlabel("balanced accuracy on sessions not used for training")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    figure.tight_layout()
    figure.savefig(output / "quality.png", dpi=110)
    print(header + table.round(3).to_string(index=False))
    print(f"-> {output / 'quality.csv'}, {output / 'quality.md'}, {output / 'quality.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(WINGBEATS))
    parser.add_argument("--group-by", default="auto")
    parser.add_argument("--output", default="quality-output")
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--clip-seconds", type=float, default=1.0)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="Any other `train` parameter for every member, e.g. augment=roll,gain")
    parser.add_argument("--unseen", default=None, metavar="DIR",
                        help="Labelled sessions outside --data, scored by all folds' members together and by the "
                             "baselines fitted on all of --data")
    parser.add_argument("--variants", default=None, metavar="FILE",
                        help="YAML map of variant name -> train parameters, each run beside the recipe")
    parser.add_argument("--cache-dir", default=None, help="Feature cache (default: <output>/cache)")
    parser.add_argument("--distill", action="store_true",
                        help="Also distil a tiny student per fold from its members, on its training clips")
    parser.add_argument("--distill-scored-audio", action="store_true",
                        help="The students also learn the soft vote on the scored sessions' audio (not their labels)")
    parser.add_argument("--distill-set", action="append", default=[], metavar="KEY=VALUE",
                        help="Any `distill` parameter of the students, e.g. temperature=4 or alpha=0.9")
    args = parser.parse_args()
    if args.variants:
        run_variants(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
