"""A mosquito-ast member as a transformers model: shipped as remote code in every folder that
`transformers_format.save_for_transformers` writes, so it imports torch, numpy and transformers only.

The member pools by the mean over all tokens of the final-layernormed hidden state, then a linear
layer. `ASTForAudioClassification` pools (token 0 + token 1) / 2 and puts a LayerNorm before its
linear layer. This subclass keeps the parent's weights (so the plain class loads the same file without
missing keys) and computes the member's own logits: `classifier.layernorm`, which the member lacks, is
stored at LayerNorm's defaults (weight 1, bias 0) and left unused here.

`MosquitoASTFeatureExtractor` (loaded by `AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)`)
computes the member's own input on clips of any length: the member zero-pads (or trims) the waveform to its
clip length before the fbank, while `ASTFeatureExtractor` pads the fbank frames with zeros after it, which on a
short clip gives other frames (the log-mel of silence is far below zero) and other probabilities.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import ASTFeatureExtractor, ASTForAudioClassification
from transformers.modeling_outputs import SequenceClassifierOutput


class MosquitoASTForAudioClassification(ASTForAudioClassification):
    """`ASTForAudioClassification` with the member's head: mean over all tokens, then `classifier.dense`."""

    def forward(self, input_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, **kwargs) -> SequenceClassifierOutput:
        outputs = self.audio_spectrogram_transformer(input_values, attention_mask=attention_mask, **kwargs)
        logits = self.classifier.dense(outputs.last_hidden_state.mean(dim=1))
        loss = None if labels is None else self.loss_function(labels, logits, self.config, **kwargs)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class MosquitoASTFeatureExtractor(ASTFeatureExtractor):
    """`ASTFeatureExtractor` that first zero-pads at the end, or trims, each waveform to `clip_samples`, as
    the member's own features are made."""

    def __init__(self, clip_samples: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clip_samples = clip_samples

    def fit_length(self, wave) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if self.clip_samples is None or len(wave) >= self.clip_samples:
            return wave[: self.clip_samples]
        return np.pad(wave, (0, self.clip_samples - len(wave)))

    def __call__(self, raw_speech, *args, **kwargs):
        batched = (isinstance(raw_speech, np.ndarray) and raw_speech.ndim > 1) or (
            isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0
            and isinstance(raw_speech[0], (np.ndarray, tuple, list)))
        waves = [self.fit_length(w) for w in raw_speech] if batched else self.fit_length(raw_speech)
        return super().__call__(waves, *args, **kwargs)
