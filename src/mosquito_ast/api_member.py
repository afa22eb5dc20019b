"""The Python API's member, apart from `api.py`: subclassing `Member` imports torch, which `from mosquito_ast
import Ensemble` must not, so this module loads with the first ensemble."""

from __future__ import annotations

from pathlib import Path

from .checkpoints.transformers_format import write_transformers_folder
from .inference.members import Member


class EnsembleMember(Member):
    """A loaded member (`name`, `folder`, `model`, `config`, `features`) that can be written for transformers."""

    def save_pretrained(self, output_dir: str | Path, overwrite: bool = False) -> Path:
        """Write this member as a transformers folder (`checkpoints.transformers_format`): load it with
        `AutoModelForAudioClassification.from_pretrained(output_dir, trust_remote_code=True)` for the
        member's own probabilities.

        >>> ensemble.members[0].save_pretrained("hf/member")  # doctest: +SKIP
        """
        return write_transformers_folder(self.model, self.features, output_dir, overwrite)

    def __repr__(self) -> str:
        """One line, not the dataclass's, which would print the whole network and config."""
        features = self.features
        return (f"EnsembleMember({self.name!r}, {len(self.labels)} labels, {features.clip_seconds:g} s clips at "
                f"{features.sample_rate} Hz, folder={str(self.folder)!r})")
