"""A member as a Hugging Face transformers folder: `config.json` (with id2label/label2id),
`model.safetensors`, `preprocessor_config.json` for `ASTFeatureExtractor`, and the remote code
`modeling_mosquito_ast.py` (the member's head, and a feature extractor that pads as the member does).

Two ways to load it, both offline from the folder:
- faithful: `AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True)` builds
  `MosquitoASTForAudioClassification`, whose logits are the member's (mean over all tokens, linear layer);
- plain: `ASTForAudioClassification.from_pretrained(folder)` loads the same weights without missing keys,
  but pools (token 0 + token 1) / 2 through a LayerNorm (stored at weight 1, bias 0) the member never
  trained with: its probabilities are not the member's. It is a starting point for fine-tuning with
  transformers' tools, not a copy of the member.

The member's input on clips of any length comes from `AutoFeatureExtractor.from_pretrained(folder,
trust_remote_code=True)` (`MosquitoASTFeatureExtractor`: the waveform zero-padded or trimmed to the clip
length, then `ASTFeatureExtractor`); without remote code, `ASTFeatureExtractor` pads fbank frames instead,
which matches the member only on clips of its exact length.

`ASTFeatureExtractor` frames 400 samples every 160 up to Nyquist: the member's own features exactly
at 16 kHz, 25 ms window, 10 ms hop and a full band. Other settings are written too
(`mosquito_ast_features`), with a warning that the extractor will not reproduce them.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from torch import nn
from transformers import ASTConfig, ASTFeatureExtractor
from transformers.utils import logging as transformers_logging

from mosquito_ast_lite.audio import clip_samples
from mosquito_ast_lite.io import atomic_directory

from ..features import FeatureSettings
from ..models.classifier import ASTClassifier
from . import TRANSFORMERS_FOLDER
from .classifier import load_member
from .encoder import config_to_dict
from .modeling_mosquito_ast import MosquitoASTFeatureExtractor, MosquitoASTForAudioClassification

AUTO_CLASS = "AutoModelForAudioClassification"
AUTO_EXTRACTOR = "AutoFeatureExtractor"
MODULE = "modeling_mosquito_ast"  # the remote-code file save_pretrained copies beside the weights


def save_for_transformers(member_dir: str | Path, output_dir: str | Path, labels: Sequence[str] | None = None,
                          overwrite: bool = False) -> Path:
    """Write the member in `member_dir` as a transformers folder (see the module docstring); `labels` are
    the old id order an old-notebook member needs.

    >>> save_for_transformers("runs/best/tiny", "hf/tiny")  # doctest: +SKIP
    >>> AutoModelForAudioClassification.from_pretrained("hf/tiny", trust_remote_code=True)  # doctest: +SKIP
    """
    model, config = load_member(member_dir, list(labels) if labels else None)
    return write_transformers_folder(model, FeatureSettings.from_dict(config["features"]), output_dir, overwrite)


def write_transformers_folder(model: ASTClassifier, features: FeatureSettings, output_dir: str | Path,
                              overwrite: bool = False) -> Path:
    """Write a loaded member as a transformers folder, atomically; an existing non-empty folder is
    replaced only with `overwrite`."""
    output = Path(output_dir)
    if model.spectrum_token != "none":
        raise ValueError(f"{output}: this member joins a spectrum token to the AST (spectrum_token "
                         f"{model.spectrum_token}), which a transformers AST folder cannot hold; export it to ONNX")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output}: not empty (pass overwrite=True to replace it)")
    if not extractor_matches(features):
        print(f"warning: {output}: ASTFeatureExtractor frames 25 ms every 10 ms at 16 kHz up to Nyquist; this "
              f"member uses {features.extraction_key()}, so compute its features with mosquito_ast.features "
              f"(settings in preprocessor_config.json, mosquito_ast_features)")
    with atomic_directory(output, TRANSFORMERS_FOLDER) as staging, no_progress_bars():
        transformers_model(model).save_pretrained(staging)
        feature_extractor(features).save_pretrained(staging)
    return output


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Without transformers' (and huggingface_hub's) progress bars, restored after: `save_pretrained` draws
    a "Writing model shards" bar for the one local file of a member. Warnings and log messages stay."""
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def transformers_model(model: ASTClassifier) -> MosquitoASTForAudioClassification:
    """The member's weights in transformers' layout: the encoder under `audio_spectrogram_transformer`,
    the linear layer as `classifier.dense`, `classifier.layernorm` at LayerNorm's defaults."""
    labels = list(model.labels)
    config = ASTConfig(**config_to_dict(model.encoder.config), id2label=dict(enumerate(labels)),
                       label2id={name: i for i, name in enumerate(labels)})
    MosquitoASTForAudioClassification.register_for_auto_class(AUTO_CLASS)
    converted = MosquitoASTForAudioClassification(config)
    converted.audio_spectrogram_transformer.load_state_dict(model.encoder.state_dict())
    converted.classifier.dense.load_state_dict(model.classifier.state_dict())
    nn.init.ones_(converted.classifier.layernorm.weight)
    nn.init.zeros_(converted.classifier.layernorm.bias)
    return converted.eval()


def feature_extractor(features: FeatureSettings) -> ASTFeatureExtractor:
    """`ASTFeatureExtractor` at the member's rate, mel bins, frames and normalization mean/std, naming
    `MosquitoASTFeatureExtractor` (shipped in `modeling_mosquito_ast.py`) for `trust_remote_code=True`, which
    pads the waveform to the member's clip length first. Its type stays `ASTFeatureExtractor`, so a plain
    `AutoFeatureExtractor.from_pretrained(folder)` still loads without remote code."""
    with warnings.catch_warnings():  # 128 Kaldi mel bins at 16 kHz leave one empty filter, as in AST itself
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        return ASTFeatureExtractor(sampling_rate=features.sample_rate, num_mel_bins=features.num_mel_bins,
                                   max_length=features.max_length, mean=features.norm_mean,
                                   std=features.norm_std, do_normalize=True, mosquito_ast_features=features.to_dict(),
                                   clip_samples=clip_samples(features.sample_rate, features.clip_seconds),
                                   auto_map={AUTO_EXTRACTOR: f"{MODULE}.{MosquitoASTFeatureExtractor.__name__}"})


def extractor_matches(features: FeatureSettings) -> bool:
    """Whether `ASTFeatureExtractor` (400-sample window, 160-sample hop, band to Nyquist) computes the
    member's own fbank."""
    framing = (features.sample_rate, features.window_ms, features.hop_ms, features.top_frequency)
    return framing == (16000, 25.0, 10.0, 8000)
