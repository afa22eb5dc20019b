"""The Python API (`mosquito_ast.Ensemble`), members as transformers folders, and --models taking several
folders: the API's tables are the commands' numbers, and the transformers folder is the member."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mosquito_ast import Ensemble, save_for_transformers
from mosquito_ast_lite.audio import load_clip
from mosquito_ast.checkpoints.classifier import load_member, save_member
from mosquito_ast.cli import app
from mosquito_ast.config import EvaluateParams, PredictParams
from mosquito_ast.evaluation.results import SOFT, EnsembleEvaluation
from mosquito_ast.features import FeatureSettings, fbank, normalize
from mosquito_ast.models.classifier import ASTClassifier
from mosquito_ast.models.encoder import encoder_config

SPECIES = ["Ae. aegypti", "An. gambiae", "C. pipiens", "C. quinquefasciatus"]


def random_member(folder, labels=SPECIES, settings=FeatureSettings(), seed=0):
    torch.manual_seed(seed)
    model = ASTClassifier.from_config(encoder_config("tiny", settings), labels)
    return save_member(model, folder, settings, {})


@pytest.fixture
def models(tmp_path):
    """Two sweeps of one member each; the second lists the classes in another order."""
    random_member(tmp_path / "models" / "x" / "best" / "a", seed=1)
    random_member(tmp_path / "models" / "y" / "best" / "b", SPECIES[::-1], seed=2)
    return tmp_path / "models"


def clips(folder, count=6):
    return sorted(str(p) for p in folder.rglob("*.wav"))[:count]


HEAVY = ("torch", "lightning", "pytorch_lightning", "sklearn", "matplotlib", "transformers", "pandas")


@pytest.mark.parametrize("statement", ["import mosquito_ast", "from mosquito_ast import Ensemble"])
def test_importing_the_api_loads_nothing_heavy(statement):
    """A notebook cell that only imports is instant: the heavy libraries wait for `Ensemble.load`."""
    code = f"import sys; {statement}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_repr_says_what_was_loaded(models):
    ensemble = Ensemble.load(models)
    text = repr(ensemble)
    assert text.splitlines()[0] == "Ensemble(2 members, 0 spectrum forests, 4 labels)" and len(text.splitlines()) == 5
    assert "x/best/a, y/best/b" in text and ", ".join(SPECIES) in text and str(models) in text
    member = repr(ensemble.members[0])
    assert member.startswith("EnsembleMember('x/best/a', 4 labels, 1 s clips at 16000 Hz") and "\n" not in member


def test_predict_table_is_the_predict_commands_csv(models, synth_split, tmp_path):
    ensemble = Ensemble.load(models)
    assert [m.name for m in ensemble.members] == ["x/best/a", "y/best/b"] and ensemble.labels == SPECIES
    paths = clips(synth_split[1])
    table = ensemble.predict(paths, precision="32")
    assert table.shape == (len(paths), 2 + len(SPECIES))
    assert list(table.columns) == ["label", "confidence", *SPECIES] and table.index.name == "path"
    assert list(table.index) == paths
    np.testing.assert_allclose(table[SPECIES].sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(table["confidence"], table[SPECIES].max(axis=1))

    output = tmp_path / "p.csv"
    result = CliRunner().invoke(app, ["predict", *paths, "--models", str(models), "--output", str(output),
                                      "--precision", "32", "--no-progress"])
    assert result.exit_code == 0, result.output
    command = pd.read_csv(output).set_index("path")
    assert list(command.loc[table.index, "label"]) == list(table["label"])
    np.testing.assert_allclose(command.loc[table.index, SPECIES], table[SPECIES], atol=1e-6)


def test_predict_windows_gives_one_row_per_window(models, synth_split, tmp_path):
    import soundfile

    paths = clips(synth_split[1], 2)
    waves = [soundfile.read(path)[0] for path in paths]
    long = tmp_path / "long.wav"  # 2 s: several windows of the members' 1 s clips
    soundfile.write(long, np.concatenate(waves), soundfile.info(paths[0]).samplerate)
    ensemble = Ensemble.load(models)
    windows = ensemble.predict([*paths, long], windows=True, precision="32", hop_seconds=0.5)
    assert isinstance(windows, pd.DataFrame)
    assert list(windows.columns) == ["path", "start_s", "end_s", "presence_db", "label", "confidence", *SPECIES]
    counts = windows["path"].value_counts()
    assert [counts[p] for p in paths] == [1, 1] and counts[str(long)] > 1 and len(windows) == counts.sum()
    assert set(windows["label"]) <= {*SPECIES, "uncertain"} and (windows["presence_db"] > 6).all()
    np.testing.assert_allclose(windows["end_s"] - windows["start_s"], 1.0)
    np.testing.assert_allclose(windows[SPECIES].sum(axis=1), 1, atol=3e-4)  # 4 decimals each
    files = ensemble.predict([*paths, long], precision="32", hop_seconds=0.5)
    assert list(files.index) == [*paths, str(long)]  # the per-file table stays the default


def test_predict_takes_folders_and_leaves_unreadable_files_out(models, synth_split, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    table = Ensemble.load(models).predict([synth_split[1] / SPECIES[0], broken], precision="32")
    assert len(table) == len(clips(synth_split[1] / SPECIES[0], 100)) and str(broken) not in table.index
    with pytest.raises(FileNotFoundError):
        Ensemble.load(models).predict([])


def test_evaluate_returns_the_evaluate_commands_result(models, synth_split, feature_cache_dir):
    ensemble = Ensemble.load(models)
    evaluation = ensemble.evaluate(synth_split[1], precision="32", bootstrap=0, baseline=False,
                                   cache_dir=str(feature_cache_dir))
    assert isinstance(evaluation, EnsembleEvaluation)
    assert evaluation.metrics["members"] == ["x/best/a", "y/best/b"]
    soft = evaluation.predictions.set_index("path")[[f"{SOFT}:p:{s}" for s in SPECIES]]
    table = ensemble.predict(list(soft.index), precision="32")  # one-second clips: one window each
    np.testing.assert_allclose(table[SPECIES].to_numpy(), soft.to_numpy(), atol=5e-5)  # written with 4 decimals


def test_models_takes_several_folders_and_counts_a_member_once(models, capsys, tmp_path):
    x, y = models / "x" / "best", models / "y" / "best"
    assert [m.name for m in Ensemble.load(x / "a").members] == ["a"]
    assert [m.name for m in Ensemble.load([x, y]).members] == ["x/best/a", "y/best/b"]
    assert [m.name for m in Ensemble.load([str(x), str(y)]).members] == ["x/best/a", "y/best/b"]
    capsys.readouterr()
    assert [m.name for m in Ensemble.load([models, x / "a"]).members] == ["x/best/a", "y/best/b"]
    assert "reached again; counted once" in capsys.readouterr().out
    (y / "link").symlink_to(x / "a", target_is_directory=True)
    assert [m.folder for m in Ensemble.load(models).members] == [x / "a", y / "b"]
    assert "reached again" in capsys.readouterr().out

    assert EvaluateParams(models=f"{x},{y}", data="d").models == [str(x), str(y)]
    assert PredictParams(inputs=["a.wav"], models=str(x)).models == [str(x)]  # one folder, as before
    config = tmp_path / "predict.yaml"
    config.write_text(f"models:\n  - {x}\n  - {y}\ninputs: [a.wav]\n")
    assert PredictParams.from_sources(config).models == [str(x), str(y)]


def test_predict_command_takes_a_comma_separated_models_list(models, synth_split, tmp_path):
    output = tmp_path / "p.csv"
    folders = f"{models / 'x' / 'best'},{models / 'y' / 'best'}"
    result = CliRunner().invoke(app, ["predict", *clips(synth_split[1], 2), "--models", folders,
                                      "--output", str(output), "--precision", "32", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(output.with_suffix(".json").read_text())["members"] == ["x/best/a", "y/best/b"]


def transformers_inputs(clip_paths, settings):
    """The member's own normalized features of some clips, as `predict` and `evaluate` compute them."""
    waves = [load_clip(p, settings.sample_rate, settings.clip_seconds) for p in clip_paths]
    return waves, torch.from_numpy(normalize(np.stack([fbank(w, settings) for w in waves]), settings))


def test_member_saved_for_transformers_gives_the_members_logits(tmp_path, synth_split):
    from transformers import (ASTFeatureExtractor, ASTForAudioClassification, AutoFeatureExtractor,
                              AutoModelForAudioClassification)

    settings = FeatureSettings(norm_mean=-3.5, norm_std=3.0)  # the member's own statistics, not AudioSet's
    member = random_member(tmp_path / "member", SPECIES[::-1], settings, seed=4)
    folder = save_for_transformers(member, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(SPECIES[::-1])}
    assert config["label2id"] == {name: i for i, name in enumerate(SPECIES[::-1])}

    extractor = AutoFeatureExtractor.from_pretrained(folder)
    assert isinstance(extractor, ASTFeatureExtractor)
    assert (extractor.mean, extractor.std, extractor.max_length, extractor.sampling_rate) == (-3.5, 3.0, 100, 16000)
    waves, features = transformers_inputs(clips(synth_split[1], 4), settings)
    extracted = extractor(waves, sampling_rate=16000, return_tensors="pt")["input_values"]
    torch.testing.assert_close(extracted, features, rtol=0, atol=1e-5)

    model, _ = load_member(member)
    faithful = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(faithful).__name__ == "MosquitoASTForAudioClassification"
    plain, info = ASTForAudioClassification.from_pretrained(folder, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    with torch.no_grad():
        expected = model(features)
        torch.testing.assert_close(faithful(input_values=features).logits, expected, rtol=0, atol=1e-5)
        assert plain.eval()(input_values=features).logits.shape == expected.shape  # its own pooling: other numbers


def test_ensemble_members_save_pretrained_and_refuse_to_overwrite(models, tmp_path, capsys):
    member = Ensemble.load(models).members[1]
    folder = member.save_pretrained(tmp_path / "hf")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors",
                                                        "modeling_mosquito_ast.py", "preprocessor_config.json"]
    assert "Writing model shards" not in capsys.readouterr().err  # transformers' bar, for one local file
    with pytest.raises(FileExistsError, match="overwrite"):
        member.save_pretrained(folder)
    member.save_pretrained(folder, overwrite=True)

    other = random_member(tmp_path / "30ms", settings=FeatureSettings(window_ms=30.0))
    capsys.readouterr()
    save_for_transformers(other, tmp_path / "hf-30ms")
    assert "ASTFeatureExtractor frames 25 ms" in capsys.readouterr().out
    preprocessor = json.loads((tmp_path / "hf-30ms" / "preprocessor_config.json").read_text())
    assert preprocessor["mosquito_ast_features"]["window_ms"] == 30.0


def test_member_names_stay_apart_across_folders(models, tmp_path):
    shutil.copytree(models / "x", tmp_path / "copy")  # a copy is another folder, so another member
    names = [m.name for m in Ensemble.load([models, tmp_path / "copy"]).members]
    assert names == ["models/x/best/a", "models/y/best/b", "copy/best/a"]
