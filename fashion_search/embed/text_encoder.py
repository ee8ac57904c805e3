"""Words as garment vectors: a text query becomes a vector in the space of the stored garment
vectors, so that the index a photo search uses answers words too.

The shipped model (``models/text_encoder.onnx``, trained by ``fashion-search train
text-encoder``; see ``models/TEXT_ENCODER.md``) is all-MiniLM-L6-v2 (its weights frozen,
quantised to 8 bits) followed by a small tower trained on the Kaggle product names and
captions of their labels to land near the garment head's vectors of the products they name.
It is tied to the embedder it was trained for: the file records that embedder's sha256, and a
text search of an index built by another embedder is refused. Tokenising needs only the
``tokenizers`` library; serving needs neither torch nor a download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from fashion_search.errors import MissingDependencyError, ModelError, TextSearchError, UsageError
from fashion_search.registry import TEXT_ENCODERS, PathLike
from fashion_search.runtime import OnnxModel, sha256_file
from fashion_search.vectors import l2_normalise

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "text_encoder.onnx"
DEFAULT_TOKENIZER = MODEL_DIR / "text_tokenizer.json"
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "text_vector"  # not "embedding": the exporter names the token-embedding lookup so
# Words past this many tokens are cut: product queries are short, and the cost grows with it.
MAX_TEXT_CHARS = 500
REGENERATE_HINT = (
    "regenerate it from a source checkout with: pip install -e '.[train]' && fashion-search train text-encoder "
    "--recipe fashion_search/embed/models/text_encoder.recipe.toml"
)


@TEXT_ENCODERS.register("minilm-tower")
class TextEncoder(OnnxModel):
    """Text -> unit vector in the space of the embedder the model was trained for."""

    name = "minilm-tower"
    kind = "text encoder model"
    default_path = DEFAULT_MODEL
    regenerate_hint = REGENERATE_HINT

    def __init__(
        self,
        model_path: Optional[PathLike] = None,
        tokenizer_path: Optional[PathLike] = None,
        threads: Optional[int] = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, not {batch_size!r}")
        super().__init__(model_path, threads)
        self.batch_size = batch_size
        self.max_length = int(self.metadata_floats("max_length", 1)[0])
        self.dim = int(self.metadata_floats("dim", 1)[0])
        self.embedder = self.metadata.get("embedder", "")
        self.embedder_sha256 = self.metadata.get("embedder_sha256", "")
        if not self.embedder_sha256:
            raise ModelError(f"{self.model_path} does not record the embedder it was trained for")
        output = self.session.get_outputs()[0]
        if output.name != OUTPUT or output.shape[-1] != self.dim:
            raise ModelError(f"{self.model_path} must output {OUTPUT!r} of width {self.dim}, not {output.shape}")
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else DEFAULT_TOKENIZER
        if not self.tokenizer_path.is_file():
            raise ModelError(f"text tokenizer not found: {self.tokenizer_path}; {REGENERATE_HINT}")
        self.tokenizer_sha256 = sha256_file(self.tokenizer_path)
        recorded = self.metadata.get("tokenizer_sha256", "")
        if recorded and recorded != self.tokenizer_sha256:
            raise ModelError(
                f"{self.model_path} was exported with the tokenizer of sha256 {recorded[:12]}, but "
                f"{self.tokenizer_path} is {self.tokenizer_sha256[:12]}: they do not belong together"
            )
        self._tokenizer = load_tokenizer(self.tokenizer_path, self.max_length)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.file_identity(),
            "tokenizer_sha256": self.tokenizer_sha256,
            "dim": self.dim,
            "max_length": self.max_length,
            "embedder": self.embedder,
            "embedder_sha256": self.embedder_sha256,
        }

    def check_embedder(self, embedder_identity: dict[str, Any], where: str) -> None:
        """Refuse (:class:`TextSearchError`) an index whose vectors another embedder made:
        words are mapped into the space of one embedder only."""
        found = embedder_identity.get("sha256", "")
        if found != self.embedder_sha256:
            raise TextSearchError(
                f"the index at {where} was built by an embedder (sha256 {str(found)[:12] or 'unknown'}) other "
                f"than the one this text encoder was trained for ({self.embedder} {self.embedder_sha256[:12]}): "
                "rebuild the index with the default embedder, or train a text encoder for its own "
                "(fashion-search train text-encoder)"
            )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text, in the embedder's space."""
        texts = [check_text(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self._tokenizer.encode_batch(texts[start : start + self.batch_size])
            ids = np.asarray([e.ids for e in encoded], np.int64)
            mask = np.asarray([e.attention_mask for e in encoded], np.int64)
            (vectors,) = self.session.run([OUTPUT], {INPUTS[0]: ids, INPUTS[1]: mask})
            out.append(vectors)
        return l2_normalise(np.concatenate(out).astype(np.float32))


def check_text(text: Any) -> str:
    """A query's words: non-empty text of at most :data:`MAX_TEXT_CHARS` characters."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("a text query needs words")
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(f"a text query has at most {MAX_TEXT_CHARS} characters, not {len(text)}")
    return text.strip()


def load_tokenizer(path: Path, max_length: int) -> Any:
    """A WordPiece tokenizer from its ``tokenizer.json``, padding each batch to its longest text
    and cutting texts at ``max_length`` tokens."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError(
            f"text search needs the tokenizers library: pip install tokenizers ({exc})"
        ) from None
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


__all__ = ["DEFAULT_MODEL", "DEFAULT_TOKENIZER", "TextEncoder", "check_text", "load_tokenizer"]
