"""Every setting of the command line and the server that may come from the environment, in one
typed class: :class:`Settings`. Nothing else reads the environment.

Each setting has a default, an environment variable (``FASHION_SEARCH_`` and its name) and
limits; :meth:`Settings.load` takes the defaults, then the environment, then the options given
(a command-line option wins), and refuses a value that is not of its type or out of its range
with one line naming it. The table in ``docs/settings.md`` is rendered from this class
(:func:`settings_table`) and a test keeps the two alike.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from fashion_search.errors import UsageError

ENV_PREFIX = "FASHION_SEARCH_"
MIN_API_KEY_CHARS = 16
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MEGABYTE = 2**20


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _setting(
    default: Any,
    env: str,
    help: str,
    kind: str = "int",
    low: float = 1,
    high: float = math.inf,
    scale: float = 1,
    option: Optional[str] = None,
) -> Any:
    """A field of :class:`Settings`: ``kind`` is how its text reads (int, float, text, flag),
    ``scale`` turns the environment's unit into the field's (megabytes into bytes), ``low`` and
    ``high`` bound the field's value, ``option`` is the command-line option that sets it."""
    metadata = {"env": env, "help": help, "kind": kind, "low": low, "high": high, "scale": scale, "option": option}
    return field(default=default, metadata=metadata)


@dataclass
class Settings:
    """Limits and tuning of the command line and of one server. The defaults suit a
    public-facing shop search."""

    db: Optional[str] = _setting(None, "DB", "the index: a folder, or postgresql://...", "text", option="--db")
    host: str = _setting(
        "127.0.0.1", "HOST", "address `serve` listens on (127.0.0.1: this machine only)", "text", option="--host"
    )
    port: int = _setting(8000, "PORT", "port `serve` listens on", high=65535, option="--port")
    max_upload_bytes: int = _setting(
        10 * MEGABYTE,
        "MAX_UPLOAD_MB",
        "largest photo accepted, in MB",
        "float",
        scale=MEGABYTE,
        option="--max-upload-mb",
    )
    # Decoded pixels allowed per upload: a 40 MP photo is ~120 MB of RGB; a few-KB file that
    # claims more is a decompression bomb.
    max_pixels: int = _setting(40_000_000, "MAX_PIXELS", "decoded pixels allowed per uploaded photo")
    # Decoded pixels of all searches in flight together: eight 40 MP uploads at once would
    # otherwise hold ~1 GB of RGB; past the budget, a search waits for others to finish.
    decode_pixels: int = _setting(80_000_000, "DECODE_PIXELS", "decoded pixels of all searches in flight together")
    # More concurrent CPU-bound jobs than the cores only adds latency.
    threads: Optional[int] = _setting(
        None,
        "THREADS",
        "concurrent searches of `serve` (default: the CPU count, at least 2), and the most onnxruntime "
        "threads of each model (default: every core)",
        option="--threads",
    )
    thumbnail_cache_entries: int = _setting(2048, "THUMBNAIL_CACHE", "thumbnails kept in memory")
    image_max_age_s: int = _setting(24 * 3600, "IMAGE_MAX_AGE_S", "how long browsers may cache catalog images, in s")
    categories_ttl_s: float = _setting(
        60.0,
        "CATEGORIES_TTL_S",
        "how long a server reuses the categories and the index's record before reading them again, in s",
        "float",
        low=0.001,
    )
    # Catalog writes (PUT/DELETE /api/products/..., POST /api/products) need this key as a
    # bearer token; without one they are off. Never shown (repr) or logged.
    api_key: Optional[str] = field(
        default=None,
        repr=False,
        metadata={
            "env": "API_KEY",
            "help": "the key catalog writes need (prefer API_KEY_FILE, a file holding it)",
            "kind": "key",
            "option": None,
        },
    )
    protect_reads: bool = _setting(
        False, "PROTECT_READS", "searches and other reads need the API key too", "flag", option="--protect-reads"
    )
    uploads: Optional[str] = _setting(
        None,
        "UPLOADS",
        "folder for written products' images (default: uploads/ in a folder index)",
        "text",
        option="--uploads",
    )
    max_write_bytes: int = _setting(
        64 * MEGABYTE,
        "MAX_WRITE_MB",
        "largest catalog write request (all its images), in MB",
        "float",
        scale=MEGABYTE,
        option="--max-write-mb",
    )
    body_timeout_s: float = _setting(
        60.0, "BODY_TIMEOUT_S", "time a client has to send a whole request body, in s (then 408)", "float", low=0.001
    )

    @property
    def search_threads(self) -> int:
        """Concurrent searches of a server."""
        return self.threads or max(2, _cores())

    @property
    def model_threads(self) -> int:
        """onnxruntime's intra-op threads per model: more than the cores only adds contention."""
        return min(self.threads, _cores()) if self.threads else _cores()

    @classmethod
    def load(cls, environ: Optional[Mapping[str, str]] = None, **options: Any) -> "Settings":
        """The defaults, overridden by the environment where a variable is set (text, read and
        checked here), overridden by ``options`` that are not None (typed values, checked)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = ENV_PREFIX + spec.metadata["env"]
            text = environ.get(name, "").strip()
            if text:
                values[spec.name] = _parse(spec, text, name)
        key_file = environ.get(ENV_PREFIX + "API_KEY_FILE", "").strip()
        if key_file:
            values["api_key"] = read_api_key(key_file)
        for attribute, value in options.items():
            if attribute not in {f.name for f in dataclasses.fields(cls)}:
                raise TypeError(f"no setting {attribute!r}")
            if value is not None:
                values[attribute] = value
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse a value out of its setting's range (:class:`UsageError` naming it)."""
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            kind = spec.metadata["kind"]
            if value is None or kind in ("text", "flag", "key"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UsageError(f"{_name(spec)} must be a finite number, not {value!r}")
            if not spec.metadata["low"] <= value <= spec.metadata["high"]:
                raise UsageError(f"{_name(spec)} must be {_shown_range(spec)}, not {value / spec.metadata['scale']:g}")
        if self.api_key is not None:
            check_api_key(self.api_key, ENV_PREFIX + "API_KEY")
        if self.protect_reads and not self.api_key:
            raise UsageError("--protect-reads needs an API key: --api-key-file FILE (or FASHION_SEARCH_API_KEY_FILE)")


def _name(spec: dataclasses.Field) -> str:
    option = spec.metadata["option"]
    return f"{option} ({ENV_PREFIX}{spec.metadata['env']})" if option else f"{ENV_PREFIX}{spec.metadata['env']}"


def _shown_range(spec: dataclasses.Field) -> str:
    """A setting's range, in the unit users give it in."""
    low, high = spec.metadata["low"] / spec.metadata["scale"], spec.metadata["high"] / spec.metadata["scale"]
    if spec.metadata["kind"] == "float":
        return "a positive number" if math.isinf(high) else f"a positive number up to {high:g}"
    return f"at least {low:g}" if math.isinf(high) else f"from {low:g} to {high:g}"


def _parse(spec: dataclasses.Field, text: str, name: str) -> Any:
    """A setting's text from the environment as its field's type, checked by :meth:`Settings.check`."""
    kind = spec.metadata["kind"]
    if kind == "text":
        return text
    if kind == "key":
        return check_api_key(text, name)
    if kind == "flag":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UsageError(f"{name} takes true or false, not {text!r}")
    try:
        number = float(text) if kind == "float" else int(text)
    except ValueError:
        wanted = "a number" if kind == "float" else "a whole number"
        raise UsageError(f"{name}={text!r} is not {wanted}") from None
    if not math.isfinite(number):
        raise UsageError(f"{name}={text!r} is not a finite number")
    scaled = number * spec.metadata["scale"]
    # A positive number of megabytes below one byte is still refused, as zero.
    return int(scaled) if kind == "int" or spec.metadata["scale"] != 1 else scaled


def check_api_key(key: str, source: str) -> str:
    if len(key) < MIN_API_KEY_CHARS or not key.isprintable() or " " in key:
        raise UsageError(
            f"the API key from {source} must be at least {MIN_API_KEY_CHARS} printable characters without spaces "
            "(e.g. `openssl rand -hex 32`)"
        )
    return key


def read_api_key(path: str | os.PathLike) -> str:
    """The key in the file at ``path`` (its first line), checked."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the API key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return check_api_key(text.strip().splitlines()[0].strip() if text.strip() else "", str(path))


@functools.lru_cache(maxsize=1)
def environment_settings() -> Settings:
    """The settings of this process's environment, read once: what code that is given no
    settings (a model loaded by the Python API) falls back on."""
    return Settings.load()


def settings_table() -> str:
    """Every setting as a Markdown table: variable, option, default, what it is."""
    lines = ["| variable | option | default | what |", "|---|---|---|---|"]
    defaults = Settings()
    for spec in dataclasses.fields(Settings):
        value = getattr(defaults, spec.name)
        if value is None:
            shown = ""
        elif spec.metadata["scale"] != 1:
            shown = f"{value / spec.metadata['scale']:g}"
        else:
            shown = str(value).lower() if isinstance(value, bool) else str(value)
        option = f"`{spec.metadata['option']}`" if spec.metadata["option"] else ""
        lines.append(f"| `{ENV_PREFIX}{spec.metadata['env']}` | {option} | {shown} | {spec.metadata['help']} |")
    lines.append(
        f"| `{ENV_PREFIX}API_KEY_FILE` | `--api-key-file` |  | a file whose first line is the key catalog writes need; "
        "without a key, writes are off |"
    )
    return "\n".join(lines)


__all__ = [
    "ENV_PREFIX",
    "MIN_API_KEY_CHARS",
    "Settings",
    "check_api_key",
    "environment_settings",
    "read_api_key",
    "settings_table",
]
