"""`distill`: a student member trained on an ensemble's soft votes."""

import dataclasses
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mosquito_ast.cli import app
from mosquito_ast.config import ConfigError, DistillParams, TrainParams
from mosquito_ast.data import DatasetError
from mosquito_ast.inference.members import load_members, predict_probabilities
from mosquito_ast.commands.distill import distill, distillation_loss, labelled_samples, tempered
from mosquito_ast.training.run import student_run
from mosquito_ast.commands.train import train


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, tiny_member, synth_split, feature_cache_dir):
    """Two tiny members (the shared one and one more seed) in one ensemble folder."""
    root = tmp_path_factory.mktemp("teachers")
    other = train(TrainParams(train_dir=str(synth_split[0]), output=str(root / "runs"), postfix="seed5", preset="tiny",
                              epochs=2, batch_sizes=[8], learning_rate=1e-3, select="last", precision="32",
                              progress=False, cache_dir=str(feature_cache_dir), seed=5))
    shutil.copytree(tiny_member, root / "ensemble" / "a")
    shutil.copytree(other, root / "ensemble" / "b")
    return root / "ensemble"


def distill_params(teachers, data, output, cache, **overrides) -> DistillParams:
    values = dict(models=str(teachers), data=str(data), output=str(output), epochs=2, batch_sizes=[8],
                  precision="32", progress=False, cache_dir=str(cache), seed=1)
    values.update(overrides)
    return DistillParams(**values)


def test_student_is_a_member_folder_that_records_its_teachers(teachers, synth_split, feature_cache_dir, tmp_path):
    student = distill(distill_params(teachers, synth_split[0], tmp_path / "student", feature_cache_dir,
                                     validation_dir=str(synth_split[1]), alpha=0.5, temperature=2.0))
    [member] = load_members(student)
    ensemble = load_members(teachers)
    assert member.labels == ensemble[0].labels
    assert member.features == ensemble[0].features  # the teachers' extraction and normalization
    assert member.model.encoder.config.hidden_size < 768  # the tiny encoder
    config = json.loads((student / "config.json").read_text())
    assert config["distilled_from"] == ["a", "b"]
    assert config["distillation"]["temperature"] == 2.0 and config["distillation"]["alpha"] == 0.5
    assert config["distillation"]["data"] == str(synth_split[0]) and config["distillation"]["labelled"]
    assert config["selected"] == "last" and [row["epoch"] for row in config["history"]] == [1, 2]
    assert "balanced_accuracy" in config["history"][-1]  # the validation set reports
    # the student learned the teachers' recordings through them: its training groups include theirs
    assert set(ensemble[0].train_groups) <= set(config["data"]["train_groups"])
    assert config["data"]["train"] == str(synth_split[0]) and config["data"]["labelled_clips"] == 60
    assert list(pd.read_csv(student_run(student).work / "history.csv").epoch) == [1, 2]
    clips = sorted(str(p) for p in synth_split[1].rglob("*.wav"))
    scored = predict_probabilities([member], clips, distill_params(teachers, "x", "y", feature_cache_dir), progress=False)
    assert scored.probabilities.shape == (1, len(clips), 4)
    with pytest.raises(FileExistsError):
        distill(distill_params(teachers, synth_split[0], student, feature_cache_dir))


def test_unlabelled_folder_trains_on_the_kl_term_alone(teachers, synth_split, feature_cache_dir, tmp_path):
    unlabelled = tmp_path / "field-recordings"
    unlabelled.mkdir()
    for index, clip in enumerate(sorted(synth_split[0].rglob("*.wav"))[::3]):  # no class structure at all
        shutil.copy(clip, unlabelled / f"trap_{index:03d}.wav")
    student = distill(distill_params(teachers, unlabelled, tmp_path / "student", feature_cache_dir, epochs=1))
    config = json.loads((student / "config.json").read_text())
    assert config["distillation"]["labelled"] is False and config["distillation"]["alpha"] == 1.0
    assert config["data"]["train"] == "" and config["data"]["labelled_clips"] == 0
    assert config["data"]["train_clips"] == 20 and "train_groups" not in config["data"]  # unknown: not claimed
    assert math.isfinite(config["history"][-1]["train_loss"])
    load_members(student)


def test_which_data_counts_as_labelled(synth_split, tmp_path):
    labels = sorted(p.name for p in synth_split[0].iterdir())
    assert len(labelled_samples(synth_split[0], "auto", labels, "auto")) == 60
    assert labelled_samples(synth_split[0], "no", labels, "auto") is None
    paths_only = tmp_path / "paths.csv"
    pd.DataFrame({"path": [str(p) for p in sorted(synth_split[0].rglob("*.wav"))]}).to_csv(paths_only, index=False)
    assert labelled_samples(paths_only, "auto", labels, "auto") is None
    with pytest.raises(DatasetError, match="'label' column"):
        labelled_samples(paths_only, "yes", labels, "auto")
    sessions = tmp_path / "sessions" / "night1"  # folders that are no teacher class: unlabelled
    sessions.mkdir(parents=True)
    shutil.copy(next(synth_split[0].rglob("*.wav")), sessions / "clip.wav")
    assert labelled_samples(tmp_path / "sessions", "auto", labels, "auto") is None


def test_kl_term_is_zero_when_the_student_is_the_teacher():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    temperature = 3.0
    teacher = torch.softmax(logits / temperature, dim=-1)
    no_labels = torch.zeros(2, 3), torch.zeros(2)
    loss = distillation_loss(logits, teacher, *no_labels, temperature, alpha=1.0)
    assert float(loss.kl) == pytest.approx(0.0, abs=1e-6) and float(loss.total) == pytest.approx(0.0, abs=1e-5)
    assert float(loss.cross_entropy) == 0.0


def test_distillation_loss_matches_a_hand_computed_value():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax: (1/4, 3/4); at T = 2: (1, sqrt 3) / (1 + sqrt 3)
    teacher = torch.tensor([[0.5, 0.5]])
    hard, labelled = torch.tensor([[0.0, 1.0]]), torch.tensor([1.0])
    loss = distillation_loss(logits, teacher, hard, labelled, temperature=2.0, alpha=0.25)
    s = 1 + math.sqrt(3)
    kl = 0.5 * math.log(0.5 * s) + 0.5 * math.log(0.5 * s / math.sqrt(3))
    cross_entropy = -math.log(0.75)
    assert float(loss.kl) == pytest.approx(kl, rel=1e-5)
    assert float(loss.cross_entropy) == pytest.approx(cross_entropy, rel=1e-5)
    assert float(loss.total) == pytest.approx(0.25 * 4 * kl + 0.75 * cross_entropy, rel=1e-5)
    # an unlabelled clip in the batch adds to the KL mean but not to the cross-entropy's
    both = distillation_loss(logits.repeat(2, 1), teacher.repeat(2, 1), torch.cat([hard, torch.zeros(1, 2)]),
                             torch.tensor([1.0, 0.0]), temperature=2.0, alpha=0.25)
    assert float(both.cross_entropy) == pytest.approx(cross_entropy, rel=1e-5)


def test_tempered_probabilities_are_the_tempered_softmax_of_the_logits():
    logits = np.array([[2.0, -1.0, 0.5, 4.0], [0.1, 0.2, 0.3, -5.0]])
    probabilities = torch.softmax(torch.from_numpy(logits), -1).numpy()
    expected = torch.softmax(torch.from_numpy(logits) / 2.5, -1).numpy()
    np.testing.assert_allclose(tempered(probabilities, 2.5), expected, rtol=1e-9)
    np.testing.assert_allclose(tempered(probabilities, 1.0), probabilities, rtol=1e-9)
    assert np.isfinite(tempered(np.array([[1.0, 0.0]]), 4.0)).all()


def test_unknown_class_is_a_one_line_error(teachers, synth_split, feature_cache_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_split[1], data)
    (data / "Culex unknownii").mkdir()
    shutil.copy(next(synth_split[1].rglob("*.wav")), data / "Culex unknownii" / "clip.wav")
    result = CliRunner().invoke(app, ["distill", "--models", str(teachers), "--data", str(data), "--output",
                                      str(tmp_path / "student"), "--cache-dir", str(feature_cache_dir),
                                      "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Culex unknownii" in lines[0], result.output
    assert not (tmp_path / "student").exists()


def test_student_inside_the_teachers_folder_is_refused(teachers, tmp_path):
    with pytest.raises(ConfigError, match="inside --models"):
        distill(DistillParams(models=str(teachers), data=str(tmp_path), output=str(teachers / "student")))


def test_parameters_are_checked():
    with pytest.raises(ConfigError, match="required"):
        DistillParams(models="m", data="d")
    with pytest.raises(ConfigError, match="alpha"):
        DistillParams(models="m", data="d", output="o", alpha=1.5)
    with pytest.raises(ConfigError, match="unknown parameter.*patience"):  # distill keeps its last epoch
        DistillParams.from_sources(None, models="m", data="d", output="o", patience=3)
    params = DistillParams(models="m", data="d", output="o")
    assert (params.epochs, params.batch_sizes, params.learning_rate, params.augment, params.preset) == \
        (30, [16], 1e-3, ["mask", "mixup"], "tiny")


def test_a_manifest_with_some_labels_uses_them_and_the_rest_unlabelled(teachers, synth_split, feature_cache_dir,
                                                                        tmp_path):
    from mosquito_ast.commands.distill import packed_targets

    packed = packed_targets(np.full((3, 2), 0.5), torch.tensor([1, -1, 0]), 2)
    np.testing.assert_allclose(packed[:, 2:].numpy(), [[0, 1, 1], [0, 0, 0], [1, 0, 1]])
    clips = sorted(synth_split[0].rglob("*.wav"))[::3]
    labels = [clip.parent.name if index % 2 == 0 else "" for index, clip in enumerate(clips)]
    manifest = tmp_path / "field.csv"
    pd.DataFrame({"path": [str(c) for c in clips], "label": labels}).to_csv(manifest, index=False)
    student = distill(distill_params(teachers, manifest, tmp_path / "student", feature_cache_dir, epochs=1, alpha=0.5,
                                     teaching="fixed"))
    config = json.loads((student / "config.json").read_text())
    assert config["training"]["teaching"] == "fixed"
    assert config["data"]["train_clips"] == len(clips) == 20
    assert config["data"]["labelled_clips"] == sum(bool(label) for label in labels) == 10
    assert config["distillation"]["labelled"] is True and config["distillation"]["alpha"] < 1.0


def test_a_killed_distillation_resumes_at_the_next_epoch(teachers, synth_split, feature_cache_dir, tmp_path):
    from helpers import CrashAtEpoch
    from lightning.pytorch.callbacks import Callback

    class EpochsRun(Callback):
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self.epochs.append(trainer.current_epoch + 1)

    params = distill_params(teachers, synth_split[0], tmp_path / "student", feature_cache_dir, epochs=3,
                            checkpoint_minutes=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        distill(params, callbacks=[CrashAtEpoch(2)])
    assert not (tmp_path / "student").exists()
    seen = EpochsRun()
    student = distill(dataclasses.replace(params, resume=True), callbacks=[seen])
    assert seen.epochs == [3]  # epochs 1 and 2 are not trained again
    history = json.loads((student / "config.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]


def test_consistent_teaching_scores_each_batch_as_the_student_sees_it(teachers, synth_split, feature_cache_dir,
                                                                       tmp_path):
    """On clips left as they are, the teachers' vote on the student's (differently normalized) batch is the
    fixed target of `fixed` teaching; a distillation with it runs and records its teaching."""
    from mosquito_ast.inference.votes import soft_vote
    from mosquito_ast.inference.members import score_features
    from mosquito_ast.features import compute_features, normalize
    from mosquito_ast.inference.teachers import Teachers, TeacherVote

    members = load_members(teachers)
    paths = sorted(str(p) for p in synth_split[0].rglob("*.wav"))[:8]
    raw = compute_features(paths, members[0].features, progress=False).features
    weights = np.array([0.25, 0.75])
    student = members[0].features.with_stats(-2.0, 3.0)  # not the teachers' normalization
    vote = TeacherVote(Teachers(members, weights), student, temperature=2.0)(torch.from_numpy(normalize(raw, student)))
    expected = tempered(soft_vote(score_features(members, {members[0].features.extraction_key(): raw}, "32"),
                                  weights), 2.0)
    np.testing.assert_allclose(vote.numpy(), expected, atol=1e-5)

    output = tmp_path / "student"
    distill(distill_params(teachers, synth_split[0], output, feature_cache_dir, teaching="consistent",
                           augment=["mask", "mixup"]))
    config = json.loads((output / "config.json").read_text())
    assert config["training"]["teaching"] == "consistent"


def test_int8_teachers_vote_as_the_fp32_ones(teachers, synth_split, feature_cache_dir, tmp_path):
    """Teachers run as int8 graphs give the fp32 teachers' vote within int8's error on the student's batches;
    a distillation with them keeps the graphs beside the features and records the choice."""
    from mosquito_ast.features import FeatureCache, compute_features, normalize
    from mosquito_ast.inference.int8 import attach
    from mosquito_ast.inference.teachers import Teachers, TeacherVote

    paths = sorted(str(p) for p in synth_split[0].rglob("*.wav"))[:16]
    quantized = load_members(teachers)
    attach(quantized, tmp_path / "graphs")
    raw = compute_features(paths, quantized[0].features, progress=False).features
    student = quantized[0].features.with_stats(-2.0, 3.0)
    batch = torch.from_numpy(normalize(raw, student))
    weights = np.array([0.5, 0.5])
    int8 = TeacherVote(Teachers(quantized, weights), student, temperature=1.0, int8=True)(batch).numpy()
    fp32 = TeacherVote(Teachers(load_members(teachers), weights), student, temperature=1.0)(batch).numpy()
    assert np.abs(int8 - fp32).max() < 0.05
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.9
    assert len(list((tmp_path / "graphs").glob("*.onnx"))) == 2  # one per teacher, kept

    output = tmp_path / "student"
    distill(distill_params(teachers, synth_split[0], output, feature_cache_dir, epochs=1, int8_teachers=True))
    assert json.loads((output / "config.json").read_text())["training"]["int8_teachers"] is True
    assert len(list((FeatureCache(str(feature_cache_dir)).root / "int8").glob("*.onnx"))) >= 2
    load_members(output)


def test_the_spectrum_forest_teaches_at_its_share(teachers, tiny_member, synth_split, feature_cache_dir, tmp_path):
    """With --spectrum-forest a forest under --models votes in the teachers' targets as it votes in `predict`
    ((1 - share) * members + share * forest), on every batch and on the fixed targets, and the student's config
    names it; by default it is left out."""
    from mosquito_ast.features import compute_features, normalize
    from mosquito_ast.inference.forest import FOREST_FOLDER, load_forest
    from mosquito_ast.inference.teachers import Teachers, TeacherVote

    models = tmp_path / "models"
    shutil.copytree(teachers, models / "ensemble")
    shutil.copytree(tiny_member.parent / FOREST_FOLDER, models / "ensemble" / FOREST_FOLDER)
    members, forest = load_members(models), load_forest(models / "ensemble" / FOREST_FOLDER)
    paths = sorted(str(p) for p in synth_split[0].rglob("*.wav"))[:8]
    raw = compute_features(paths, members[0].features, progress=False).features
    weights = np.array([0.5, 0.5])
    alone, joined = Teachers(members, weights), Teachers(members, weights, [forest])
    expected = (1 - forest.share) * alone.vote(raw, "32") + forest.share * forest.probabilities(raw, alone.labels)
    np.testing.assert_allclose(joined.vote(raw, "32"), expected, atol=1e-6)
    student = members[0].features.with_stats(-2.0, 3.0)
    batch = torch.from_numpy(normalize(raw, student))
    np.testing.assert_allclose(TeacherVote(joined, student, temperature=1.0)(batch).numpy(), expected, atol=1e-5)

    output = tmp_path / "student"
    distill(distill_params(models, synth_split[0], output, feature_cache_dir, epochs=1, spectrum_forest=True))
    record = json.loads((output / "config.json").read_text())["distillation"]
    assert [f["name"] for f in record["spectrum_forests"]] == [f"ensemble/{FOREST_FOLDER}"]
    assert "spectrum forest" in record["soft_targets"]
    without = tmp_path / "student without"
    distill(distill_params(models, synth_split[0], without, feature_cache_dir, epochs=1))
    assert json.loads((without / "config.json").read_text())["distillation"]["spectrum_forests"] == []
