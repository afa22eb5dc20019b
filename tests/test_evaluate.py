"""Ensemble evaluation: member discovery and label checks, old-format members, outputs, leakage, real data."""

import html
import json
import shutil

import matplotlib.image as plt
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from transformers import ASTConfig
from typer.testing import CliRunner

from helpers import old_state
from mosquito_ast_lite.audio import load_clip
from mosquito_ast.evaluation.baselines import BASELINES
from mosquito_ast.checkpoints import CheckpointError
from mosquito_ast.checkpoints.classifier import save_member
from mosquito_ast.cli import app
from mosquito_ast.config import EvaluateParams, TrainParams
from mosquito_ast.data import DatasetError
from mosquito_ast.commands.evaluate import evaluate
from mosquito_ast.inference.forest import find_forest_folders
from mosquito_ast.inference.members import find_member_folders, load_members, predict_probabilities
from mosquito_ast.evaluation.figures import FIGURES
from mosquito_ast.evaluation.presentation import console_table
from mosquito_ast.evaluation.report import write_outputs
from mosquito_ast.features import FeatureSettings, fbank, normalize
from mosquito_ast.models import encoder as encoder_module
from mosquito_ast.models.classifier import ASTClassifier
from mosquito_ast.models.encoder import build_encoder, encoder_config

SPECIES = ["Ae. aegypti", "An. gambiae", "C. pipiens", "C. quinquefasciatus"]
OUTPUTS = ["predictions.csv", "recordings.csv", "members.csv", "per_class.csv", "coverage.csv", "metrics.json",
           "report.html", *FIGURES]


def random_member(folder, labels, settings=FeatureSettings(), seed=0):
    torch.manual_seed(seed)
    model = ASTClassifier.from_config(encoder_config("tiny", settings), labels)
    return save_member(model, folder, settings, {})


def params(models, data, output, cache, **overrides):
    values = dict(models=str(models), data=str(data), output=str(output), precision="32", progress=False,
                  cache_dir=str(cache), bootstrap=200)
    return EvaluateParams(**{**values, **overrides})


def test_label_maps_are_compared_by_name(tmp_path):
    random_member(tmp_path / "m" / "a", ["x", "y", "z"])
    random_member(tmp_path / "m" / "b", ["x", "y", "w"])
    with pytest.raises(DatasetError, match=r"member b .*extra classes \['w'\], missing classes \['z'\]"):
        load_members(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no member folders"):
        load_members(tmp_path / "empty")


def test_validation_classes_no_member_knows_are_an_error(tmp_path, synth_split, feature_cache_dir):
    random_member(tmp_path / "m" / "a", SPECIES[:3])
    with pytest.raises(DatasetError, match="classes no member knows: C. quinquefasciatus"):
        evaluate(params(tmp_path / "m", synth_split[1], tmp_path / "out", feature_cache_dir))


def test_old_format_member_gets_its_own_1024_frame_features(tmp_path, monkeypatch, synth_split, feature_cache_dir):
    # Old members are AST-base at 1024 frames; too slow for a unit test, so (test only) the "base"
    # preset is shrunk to the tiny dimensions. The loading path is the real one.
    monkeypatch.setitem(encoder_module.PRESETS, "base", encoder_module.PRESETS["tiny"])
    old_labels = SPECIES[::-1]  # the old notebooks' id order, not sorted
    torch.manual_seed(1)
    old = ASTClassifier(build_encoder(ASTConfig(**encoder_module.PRESETS["tiny"], max_length=1024)), old_labels)
    state = old_state(old.encoder)
    state.update({f"classifier.{k}": v.detach().clone() for k, v in old.classifier.state_dict().items()})
    (tmp_path / "m" / "old").mkdir(parents=True)
    save_file(state, str(tmp_path / "m" / "old" / "model.safetensors"))  # weights only, as the old notebook saved
    random_member(tmp_path / "m" / "new", SPECIES)
    with pytest.raises(CheckpointError, match="--labels"):
        load_members(tmp_path / "m")
    members = load_members(tmp_path / "m", old_labels)
    assert [m.name for m in members] == ["new", "old"]
    assert members[1].format == "old-notebook" and members[1].features.max_length == 1024
    paths = sorted(str(p) for p in synth_split[1].rglob("*.wav"))[:3]
    result = predict_probabilities(members, paths, params(tmp_path / "m", synth_split[1], tmp_path, feature_cache_dir),
                                   batch_size=2, progress=False)
    assert result.probabilities.shape == (2, 3, 4) and result.paths == paths and not result.bad
    settings = members[1].features
    x = normalize(np.stack([fbank(load_clip(p, 16000, 1.0), settings) for p in paths]), settings)
    with torch.no_grad():
        expected = old.eval()(torch.from_numpy(x)).softmax(-1).numpy()
    by_name = [old_labels.index(name) for name in SPECIES]  # columns follow the first member's names
    np.testing.assert_allclose(result.probabilities[1], expected[:, by_name], atol=1e-5)


def test_evaluation_writes_every_output_and_warns_about_leakage(tmp_path, tiny_member, synth_split, feature_cache_dir):
    models = tmp_path / "models"
    shutil.copytree(tiny_member.parent.parent, models / "sweep")  # best/tiny plus runs/tiny/best-candidate
    random_member(models / "random" / "best" / "r1", SPECIES, seed=5)
    assert [f.relative_to(models).as_posix() for f in find_member_folders(models)] == ["random/best/r1", "sweep/best/tiny"]

    # The generated splits reuse recording names (r00...) on both sides; a manifest names them apart.
    manifest = tmp_path / "validation.csv"
    rows = [(p, p.parent.name, "validation-" + p.stem.rsplit("_", 1)[0]) for p in sorted(synth_split[1].rglob("*.wav"))]
    pd.DataFrame(rows, columns=["path", "label", "group"]).to_csv(manifest, index=False)
    result = evaluate(params(models, manifest, tmp_path / "out", feature_cache_dir, weights="1,3"))
    assert not result.output.exists()  # computing writes nothing; the command writes
    out = write_outputs(result)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # no temporary files left
    clips = len(list(synth_split[1].rglob("*.wav")))
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == clips and set(predictions.true_label) == set(SPECIES)
    probabilities = predictions[[f"soft vote:p:{s}" for s in SPECIES]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    forest = "sweep/best/spectrum-forest"  # train fitted it beside the member; it holds a quarter of the soft vote
    expected = 0.75 * (0.25 * predictions[[f"random/best/r1:p:{s}" for s in SPECIES]].to_numpy()
                       + 0.75 * predictions[[f"sweep/best/tiny:p:{s}" for s in SPECIES]].to_numpy()) \
        + 0.25 * predictions[[f"{forest}:p:{s}" for s in SPECIES]].to_numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert list(result.summary.system) == ["random/best/r1", "sweep/best/tiny", forest, "mean member",
                                           "best member", "hard vote", "soft vote", *BASELINES]
    assert result.summary.set_index("system").loc[list(BASELINES), "kind"].eq("baseline").all()
    rows = result.summary.set_index("system")  # the forest has its own row; "mean member" is the AST members'
    assert rows.loc["mean member", "balanced_accuracy"] == pytest.approx(
        rows.loc[["random/best/r1", "sweep/best/tiny"], "balanced_accuracy"].mean())
    assert rows.loc["best member", "member"] in ("random/best/r1", "sweep/best/tiny")
    baseline_p = predictions[[f"{BASELINES[1]}:p:{s}" for s in SPECIES]].to_numpy()
    np.testing.assert_allclose(baseline_p.sum(1), 1, atol=1e-6)
    # (3 members + 2 ensembles + 4 baselines) x 4 classes x 2 levels
    assert len(pd.read_csv(out / "per_class.csv")) == 2 * 9 * 4
    members = pd.read_csv(out / "members.csv")
    assert members.weight.tolist() == [0.1875, 0.5625, 0.25]
    tiny = members.set_index("member").loc["sweep/best/tiny"]  # the mechanisms a member trained with, recorded
    assert (tiny.spectrum_token, tiny.layer_drop, tiny.mask_fraction) == ("none", 0.0, 0.2)
    text = (out / "metrics.json").read_text()
    metrics = json.loads(text)
    assert "NaN" not in text and metrics["clips"] == clips and metrics["recordings"] == 4
    assert metrics["warnings"] == []
    assert set(metrics["clip_level"]["gain"]) == {"hard vote", "soft vote"}
    difference = metrics["clip_level"]["baseline_difference"]  # the soft vote against the best baseline, paired
    assert difference["ci_low"] <= difference["difference"] <= difference["ci_high"]
    for figure in FIGURES:
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(FIGURES) and "soft vote" in report
    assert metrics["coverage_headline"] in report.replace("&gt;", ">")
    coverage = pd.read_csv(out / "coverage.csv")
    assert set(coverage.system) == {"soft vote", "hard vote", "best member"}
    assert coverage[coverage.threshold == 0].coverage.eq(1).all()
    soft = result.summary.set_index("system").loc["soft vote"]
    assert f"{soft.balanced_accuracy:.3f}" in report and f"{soft.log_loss:.3f}" in report
    assert all(system in report for system in result.summary.system)
    assert all(note in report for note in map(html.escape, metrics["notes"]))
    image = plt.imread(out / "confusion_matrix.png")
    assert image.shape[1] > image.shape[0] > 200  # the hard and soft vote side by side

    runner = CliRunner()
    leaked = runner.invoke(app, ["evaluate", "--models", str(models), "--data", str(synth_split[0]), "--output",
                                 str(tmp_path / "leak"), "--precision", "32", "--no-progress",
                                 "--cache-dir", str(feature_cache_dir), "--bootstrap", "50"])
    assert leaked.exit_code == 0, leaked.output
    table_header = console_table(result.summary).splitlines()[0]
    assert leaked.output.count(table_header) == 1  # evaluate prints the table; write_outputs only the headline
    assert "Soft vote: balanced accuracy" in leaked.output and "chance 0.250 (1/4)" in leaked.output
    assert "warning: member sweep/best/tiny was trained on this very data set" in leaked.output
    warnings = json.loads((tmp_path / "leak" / "metrics.json").read_text())["warnings"]
    assert any("recording(s) of the evaluated set" in w for w in warnings)
    assert "trained on 12 recording(s)" in (tmp_path / "leak" / "report.html").read_text()


def _split_by_session(wingbeats, root):
    """One session per species for training, another for evaluation (files linked, never copied)."""
    for species in sorted(p for p in wingbeats.iterdir() if p.is_dir()):
        sessions = sorted({p.parent for p in species.rglob("*.wav")})
        for side, session in zip(("train", "validation"), sessions):
            target = root / side / species.name / session.relative_to(species)
            target.mkdir(parents=True)
            for clip in session.glob("*.wav"):
                (target / clip.name).symlink_to(clip)
    return root / "train", root / "validation"


def test_wingbeats_ensemble_of_two_tiny_members(tmp_path, wingbeats, feature_cache_dir):
    from mosquito_ast.commands.train import train

    train_dir, validation_dir = _split_by_session(wingbeats, tmp_path / "split")
    for seed in (1, 2):
        train(TrainParams(train_dir=str(train_dir), validation_dir=str(validation_dir), output=str(tmp_path / "sweep"),
                          postfix=f"seed{seed}", preset="tiny", epochs=1, batch_sizes=[16], learning_rate=1e-3,
                          clip_seconds=0.625, precision="32", progress=False, cache_dir=str(feature_cache_dir),
                          seed=seed))
    result = evaluate(params(tmp_path / "sweep", validation_dir, tmp_path / "out", feature_cache_dir,
                             precision="bf16-mixed", spectrum_forest=False))
    assert result.metrics["precision"] == "bf16-mixed"
    assert len(result.predictions) == len(list(validation_dir.rglob("*.wav")))
    assert len(result.per_class[result.per_class.system == "soft vote"]) == 6
    assert result.metrics["recordings"] == 6 and result.metrics["warnings"] == []
    assert result.members.shared_groups.tolist() == ["", ""]
    assert len(find_forest_folders(tmp_path / "sweep")) == 1  # fitted once for both seeds' training clips
    assert all(len(g.split("; ")) == 6 for g in result.members.train_groups)
    soft = result.summary.set_index("system").loc["soft vote"]
    assert 0 <= soft.accuracy_ci_low <= soft.accuracy <= soft.accuracy_ci_high <= 1
    members = load_members(tmp_path / "sweep")
    exact = predict_probabilities(members, result.predictions.path, params(tmp_path / "sweep", validation_dir,
                                  tmp_path, feature_cache_dir), progress=False)
    np.testing.assert_allclose(result.predictions[[f"soft vote:p:{s}" for s in members[0].labels]].to_numpy(),
                               exact.probabilities.mean(0), atol=0.05)  # bf16 autocast stays close to fp32
