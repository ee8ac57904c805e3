"""Loading the ONNX models the project serves: one onnxruntime factory with one set of settings,
one reader of the metadata a model file carries, one content hash that names a model file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from fashion_search.errors import ModelError, ModelNotFoundError

if TYPE_CHECKING:  # onnxruntime loads with the first model, not with this module
    import onnxruntime

# Keys this project writes into an ONNX file's metadata, under this prefix.
METADATA_PREFIX = "fashion_search."


THREADS_ENV = "FASHION_SEARCH_THREADS"


def default_threads() -> int:
    """CPU cores this process may use: more intra-op threads than that only adds contention.
    ``$FASHION_SEARCH_THREADS`` caps it (set for each Ray worker to its share of a node)."""
    capped = os.environ.get(THREADS_ENV, "").strip()
    if capped.isdigit() and int(capped) > 0:
        return int(capped)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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


__all__ = [
    "METADATA_PREFIX",
    "check_names",
    "default_threads",
    "metadata_floats",
    "metadata_names",
    "model_metadata",
    "onnx_session",
    "sha256_file",
]
