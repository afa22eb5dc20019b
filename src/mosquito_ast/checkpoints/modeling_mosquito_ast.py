"""A mosquito-ast member as a transformers model: shipped as remote code in every folder that
`transformers_format.save_for_transformers` writes, so it imports torch and transformers only.

The member pools by the mean over all tokens of the final-layernormed hidden state, then a linear
layer. `ASTForAudioClassification` pools (token 0 + token 1) / 2 and puts a LayerNorm before its
linear layer. This subclass keeps the parent's weights (so the plain class loads the same file without
missing keys) and computes the member's own logits: `classifier.layernorm`, which the member lacks, is
stored at LayerNorm's defaults (weight 1, bias 0) and left unused here.
"""

from __future__ import annotations

import torch
from transformers import ASTForAudioClassification
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
