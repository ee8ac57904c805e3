"""Loading the ONNX models the project serves: one base class (:class:`OnnxModel`) that finds a
model file, opens it with one set of onnxruntime settings, reads the metadata it carries and
names it by content hash; each served model (parser, embedder, head) is a small subclass."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Sequence

from fashion_search.errors import ModelError, ModelNotFoundError

if TYPE_CHECKING:  # onnxruntime loads with the first model, not with this module
    import onnxruntime

# Keys this project writes into an ONNX file's metadata, under this prefix.
METADATA_PREFIX = "fashion_search."


def default_threads() -> int:
    """onnxruntime threads per model when none are given: every core this process may use
    (more only adds contention), at most ``FASHION_SEARCH_THREADS`` (:mod:`fashion_search.settings`)."""
    from fashion_search.settings import environment_settings

    return environment_settings().model_threads


def sha256_file(path: str | os.PathLike) -> str:
    """Content hash of a weights or model file: how an index and a model card name a model."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_session(path: str | os.PathLike, threads: Optional[int] = None) -> "onnxruntime.InferenceSession":
    """An onnxruntime CPU session with the settings every served model shares.

    ``threads`` intra-op threads (default: every core this process may use); one graph at a
    time, parallel inside each operator. Spinning is off: onnxruntime's worker threads would
    otherwise busy-wait after each run, and a search runs the parser, then the embedder, then
    the store lookups back to back; on two cores each model's spinning threads took the cores
    from the next step (end-to-end search p50 130 -> 100 ms on CCP street photos when turned off).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads else default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are noise to users
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # onnxruntime's key
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own classes for files it cannot load
        raise ModelError(f"{path} is not an ONNX model onnxruntime can load: {exc}") from None


def model_metadata(loaded: "onnxruntime.InferenceSession") -> dict[str, str]:
    """The ``fashion_search.*`` metadata of a loaded model, without the prefix."""
    meta = loaded.get_modelmeta().custom_metadata_map
    return {key[len(METADATA_PREFIX) :]: value for key, value in meta.items() if key.startswith(METADATA_PREFIX)}


def metadata_floats(metadata: dict[str, str], key: str, path: str | os.PathLike, count: int) -> tuple[float, ...]:
    """A comma-separated list of ``count`` numbers from a model's metadata, or a clear error
    naming the file when the exporter did not write it."""
    text = metadata.get(key)
    try:
        values = tuple(float(v) for v in (text or "").split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise ModelError(
            f"{path} does not record its {key.replace('_', ' ')} ({count} numbers) in its metadata "
            f"(key {METADATA_PREFIX}{key}); it was not exported by this version of fashion-search"
        )
    return values


def metadata_names(metadata: dict[str, str], key: str, path: str | os.PathLike) -> tuple[str, ...]:
    """A comma-separated list of names from a model's metadata, or a clear error."""
    text = metadata.get(key, "")
    names = tuple(n for n in text.split(",") if n)
    if not names:
        raise ModelError(
            f"{path} does not record its {key} in its metadata (key {METADATA_PREFIX}{key}); "
            "it was not exported by this version of fashion-search"
        )
    return names


def check_names(found: Sequence[str], expected: Sequence[str], what: str, path: str | os.PathLike) -> None:
    """Refuse a model whose classes (or other named outputs) differ from the code's."""
    if tuple(found) != tuple(expected):
        raise ModelError(
            f"{path} labels the {what} {', '.join(found)}; this version of fashion-search knows "
            f"{', '.join(expected)}: the model and the code do not belong together"
        )


class OnnxModel:
    """A served ONNX model: its file, its onnxruntime session, the ``fashion_search.*`` metadata
    the file carries and its sha256. Subclasses say what the file is (``kind``, for messages) and
    where the shipped one lives (``default_path``); they read their own settings from
    :attr:`metadata` and add them to :meth:`file_identity` in their ``identity()``.

    A file that does not exist or that onnxruntime cannot load is refused here, with
    ``regenerate_hint`` when the subclass gives one."""

    kind: ClassVar[str] = "model"
    default_path: ClassVar[Optional[Path]] = None
    regenerate_hint: ClassVar[str] = ""

    def __init__(self, model_path: Optional[str | os.PathLike] = None, threads: Optional[int] = None) -> None:
        chosen = model_path if model_path is not None else self.default_path
        if chosen is None:
            raise ModelNotFoundError(f"no {self.kind} file given")
        self.model_path = Path(chosen)
        self.threads = threads
        if not self.model_path.is_file():
            hint = f"; {self.regenerate_hint}" if self.regenerate_hint else ""
            raise ModelNotFoundError(f"{self.kind} not found: {self.model_path}{hint}")
        self._session = onnx_session(self.model_path, threads)
        self.metadata = model_metadata(self._session)
        self.sha256 = sha256_file(self.model_path)

    @property
    def session(self) -> "onnxruntime.InferenceSession":
        return self._session

    def metadata_floats(self, key: str, count: int) -> tuple[float, ...]:
        """``count`` numbers the file records under ``key`` (see :func:`metadata_floats`)."""
        return metadata_floats(self.metadata, key, self.model_path, count)

    def metadata_names(self, key: str) -> tuple[str, ...]:
        """Names the file records under ``key`` (see :func:`metadata_names`)."""
        return metadata_names(self.metadata, key, self.model_path)

    def file_identity(self) -> dict[str, Any]:
        """The file part of a model's identity: its name and content hash."""
        return {"model": self.model_path.name, "sha256": self.sha256}


__all__ = [
    "METADATA_PREFIX",
    "OnnxModel",
    "check_names",
    "default_threads",
    "metadata_floats",
    "metadata_names",
    "model_metadata",
    "onnx_session",
    "sha256_file",
]
