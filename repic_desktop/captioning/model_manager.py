"""Model files on disk: download from the Hugging Face Hub, list what is cached, resolve ids to folders.

Policy (see docs in ``models.py``): *loading* never touches the network.  Only ``download_model`` does,
and only when the user asks for it.  Everything goes through the standard Hugging Face cache layout
(``models--org--name/{blobs,refs,snapshots}``), so models fetched with ``hf download`` or by other apps
are found too, and an interrupted download resumes where it stopped (``snapshot_download`` only fetches
the blobs that are missing).

Only the files the app needs are fetched (``MODEL_ALLOW_PATTERNS``): safetensors weights, JSON configs,
tokenizer and processor files, chat templates.  No ``*.bin`` pickles, no Python code.  The same patterns
are used when a hub id is resolved offline: huggingface_hub 2.x checks a cached snapshot for completeness
against its cached file listing, filtered by the patterns it is given.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from ..core.errors import RepicError

from ..retrieval.registry import MATCHER_MODELS

# What a Qwen2.5-VL checkpoint or a LoRA adapter needs: weights (safetensors only), configs, tokenizer
# (tokenizer.json / vocab.json / merges.txt), processor configs and chat templates.
MODEL_ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.jinja", "*.model", "*.tiktoken"]
# The suggestion matchers need less: weights, configs, and CLIP's BPE files (vocab.json, merges.txt: the
# OWLv2 processor loads a tokenizer for its text queries). Hub repos such as openai/clip-* also carry
# pytorch_model.bin, tf_model.h5 and flax weights; these patterns keep them off the disk.
MATCHER_ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt"]


DownloadProgress = Callable[[str, int, "int | None"], None]
"""``progress(description, done, total)``: bytes (or files) done so far; ``total`` may be unknown (None)."""


class ModelError(RepicError):
    """Base class of the model layer's user-facing errors (their message is one sentence for the user)."""


class ModelNotAvailable(ModelError):
    """The model (or adapter) is neither a local folder nor in the local Hugging Face cache."""


class DownloadError(ModelError):
    """A download failed (unknown repo, no network, gated model, disk full...)."""


class OfflineError(DownloadError):
    """Downloads are impossible: offline mode is on or the Hub cannot be reached."""


# --------------------------------------------------------------------------------------------- helpers


def hub_offline() -> bool:
    """True when offline mode is on (``HF_HUB_OFFLINE``, read now and as huggingface_hub read it at import)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")


def looks_like_repo_id(source: str) -> bool:
    """``org/name`` or ``name`` with hub-legal characters (a local folder that exists wins over this)."""
    return bool(_REPO_ID_RE.match(source)) and ".." not in source and len(source) <= 96


def is_local_path(source: str | os.PathLike) -> bool:
    """True when ``source`` names an existing folder on disk (``~`` expanded)."""
    return Path(os.path.expanduser(os.fspath(source))).is_dir()


def _cache_dir_arg(cache_dir: str | os.PathLike | None) -> str | None:
    return os.path.expanduser(os.fspath(cache_dir)) if cache_dir else None


def resolve_local(
    source: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    what: str = "model",
    allow_patterns: list[str] | None = None,
) -> tuple[Path, str | None]:
    """Turn a model (or adapter) source into a local folder, without any network access.

    ``allow_patterns`` must be the ones the download used (the completeness check filters by them).
    Returns ``(folder, commit)``; ``commit`` is the cached snapshot's commit hash for hub ids, None for
    local folders.  Raises ``ModelNotAvailable`` (one sentence telling the user what to do) when the
    folder does not exist or the hub id is not (completely) in the cache.
    """
    expanded = os.path.expanduser(source)
    if os.path.isdir(expanded):
        return Path(expanded).resolve(), None
    if not looks_like_repo_id(source):
        raise ModelNotAvailable(f"The {what} folder {source} does not exist: pick an existing folder or a "
                                f"Hugging Face model id.")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError

    rev_text = f" (revision {revision})" if revision else ""
    try:
        folder = snapshot_download(source, revision=revision, cache_dir=_cache_dir_arg(cache_dir),
                                   local_files_only=True,
                                   allow_patterns=list(allow_patterns or MODEL_ALLOW_PATTERNS))
    except IncompleteSnapshotError:
        raise ModelNotAvailable(
            f"The download of {source}{rev_text} is incomplete: run `repic model download {source}` again to "
            f"finish it.") from None
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        raise ModelNotAvailable(
            f"The {what} {source}{rev_text} is not downloaded yet: run `repic model download {source}` "
            f"or pick a local {what} folder.") from None
    path = Path(folder)
    return path, path.name if re.fullmatch(r"[0-9a-f]{40}", path.name) else None


# -------------------------------------------------------------------------------------------- download


def progress_tqdm_class(progress: DownloadProgress):
    """A tqdm class for ``snapshot_download(tqdm_class=...)`` that reports to ``progress`` and draws nothing.

    huggingface_hub 2.x drives several bars with it: "Fetching N files" (files), "Reconstructing..." and
    "Downloading bytes" (bytes; totals grow as files start).  Each update calls
    ``progress(description, done, total)``; exceptions raised by the callback are swallowed.
    A vanilla tqdm subclass (not huggingface_hub's): hub then passes it no ``name``/``disable`` kwargs.
    """
    import io

    from tqdm import tqdm

    class _CallbackTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = False
            kwargs["file"] = io.StringIO()  # drawn nowhere
            kwargs["mininterval"] = 0
            super().__init__(*args, **kwargs)
            self._report()

        def _report(self) -> None:
            try:
                progress(str(self.desc or ""), int(self.n), int(self.total) if self.total else None)
            except Exception:  # a broken callback must not break the download
                pass

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            self._report()
            return out

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            super().refresh(*args, **kwargs)
            self._report()

    return _CallbackTqdm


def download_model(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: DownloadProgress | None = None,
    allow_patterns: list[str] | None = None,
) -> Path:
    """Download (or finish downloading) a model or adapter from the Hugging Face Hub into the cache.

    Resumable: files already in the cache are not fetched again.  Only ``allow_patterns`` files (default
    ``MODEL_ALLOW_PATTERNS``) are fetched.  Without ``progress`` huggingface_hub draws its own tqdm bars on
    stderr; with it, progress is reported through the callback only.  Returns the snapshot folder.  Raises ``OfflineError`` at once in
    offline mode (no network attempt, so no hang) and ``DownloadError`` for every other failure.
    """
    repo_id = repo_id.strip()
    if not looks_like_repo_id(repo_id) or "/" not in repo_id:
        raise DownloadError(f"{repo_id!r} is not a Hugging Face model id (expected the form org/name).")
    if hub_offline():
        raise OfflineError(f"Cannot download {repo_id}: offline mode is on (HF_HUB_OFFLINE is set), so unset it "
                           f"and connect to the internet, or pick a local model folder.")

    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hf_errors

    kwargs: dict[str, Any] = {"revision": revision, "cache_dir": _cache_dir_arg(cache_dir),
                              "allow_patterns": list(allow_patterns or MODEL_ALLOW_PATTERNS)}
    if progress is not None:
        kwargs["tqdm_class"] = progress_tqdm_class(progress)
    rev_text = f" (revision {revision})" if revision else ""
    try:
        folder = Path(snapshot_download(repo_id, **kwargs))
    except hf_errors.GatedRepoError:
        raise DownloadError(f"{repo_id} is gated: accept its terms on huggingface.co and log in with "
                            f"`hf auth login`, then try again.") from None
    except hf_errors.RepositoryNotFoundError:
        raise DownloadError(f"There is no model {repo_id} on the Hugging Face Hub (or it is private: log in "
                            f"with `hf auth login`).") from None
    except hf_errors.RevisionNotFoundError:
        raise DownloadError(f"{repo_id} has no revision {revision!r}.") from None
    except hf_errors.HFValidationError:
        raise DownloadError(f"{repo_id!r} is not a valid Hugging Face model id.") from None
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled, hf_errors.IncompleteSnapshotError):
        raise OfflineError(f"Cannot reach the Hugging Face Hub to download {repo_id}{rev_text}: check your "
                           f"internet connection and try again (finished files are kept).") from None
    except hf_errors.HfHubHTTPError as exc:
        raise DownloadError(f"Downloading {repo_id} failed ({_one_line(exc)}): try again later; finished "
                            f"files are kept.") from None
    except OSError as exc:
        if getattr(exc, "errno", None) == 28:
            raise DownloadError(f"Not enough disk space for {repo_id} in {cache_dir or 'the Hugging Face cache'}: "
                                f"free some space or choose another cache folder.") from None
        raise DownloadError(f"Downloading {repo_id} failed: {_one_line(exc)}.") from None
    except Exception as exc:  # httpx errors and the like: no network
        if type(exc).__module__.split(".")[0] in {"httpx", "httpcore", "requests", "urllib3"}:
            raise OfflineError(f"Cannot reach the Hugging Face Hub to download {repo_id}{rev_text}: check your "
                               f"internet connection and try again (finished files are kept).") from None
        raise
    if not any(folder.glob("*.safetensors")):
        raise DownloadError(f"{repo_id}{rev_text} has no safetensors weights, and RePIC Desktop only loads "
                            f"safetensors (never pickled .bin files).")
    return folder


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


# ----------------------------------------------------------------------------------------------- list


@dataclass
class CachedRevision:
    commit: str
    refs: list[str]
    size_on_disk: int
    path: str
    complete: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CachedModel:
    repo_id: str
    kind: str  # "model" (Qwen2.5-VL checkpoint), "adapter" (LoRA), "clip" | "dinov2" | "detector", "other"
    model_type: str | None
    size_on_disk: int
    path: str
    last_modified: float
    revisions: list[CachedRevision] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["revisions"] = [r.as_dict() for r in self.revisions]
        return d


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def snapshot_kind(folder: Path) -> tuple[str, str | None]:
    """``("model", model_type)`` for a Qwen2.5-VL checkpoint, ``("adapter", None)``, a matcher role
    (``"clip"``, ``"dinov2"``, ``"detector"``) for CLIP / DINOv2 / OWLv2, else ``("other", type)``."""
    config = _read_json(folder / "config.json")
    if config is not None:
        model_type = config.get("model_type")
        if model_type == "qwen2_5_vl":
            return "model", model_type
        use = next((m.use for m in MATCHER_MODELS.values() if model_type in m.model_types), None)
        return use or "other", model_type
    if (folder / "adapter_config.json").exists():
        return "adapter", None
    return "other", None


def snapshot_complete(folder: Path) -> bool:
    """Whether the folder holds every weight file it needs (sharded index honoured)."""
    if (folder / "adapter_config.json").exists() and not (folder / "config.json").exists():
        return (folder / "adapter_model.safetensors").exists()
    if not (folder / "config.json").exists():
        return False
    index = _read_json(folder / "model.safetensors.index.json")
    if index is not None:
        shards = set((index.get("weight_map") or {}).values())
        return bool(shards) and all((folder / s).exists() for s in shards)
    return (folder / "model.safetensors").exists()


def list_models(cache_dir: str | os.PathLike | None = None, *, all_models: bool = False) -> list[CachedModel]:
    """Models in the Hugging Face cache: Qwen2.5-VL checkpoints, LoRA adapters and the suggestion matchers'
    CLIP / DINOv2 / OWLv2 weights (``all_models``: everything).

    A missing or empty cache gives ``[]``.  Sorted by repo id; revisions newest first.
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(_cache_dir_arg(cache_dir))
    except CacheNotFound:
        return []
    out: list[CachedModel] = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        if not revisions:
            continue
        kind, model_type = snapshot_kind(Path(revisions[0].snapshot_path))
        if kind == "other" and not all_models:
            continue
        out.append(CachedModel(
            repo_id=repo.repo_id,
            kind=kind,
            model_type=model_type,
            size_on_disk=int(repo.size_on_disk),
            path=str(repo.repo_path),
            last_modified=float(repo.last_modified),
            revisions=[CachedRevision(commit=r.commit_hash, refs=sorted(r.refs), size_on_disk=int(r.size_on_disk),
                                      path=str(r.snapshot_path), complete=snapshot_complete(Path(r.snapshot_path)))
                       for r in revisions],
        ))
    return sorted(out, key=lambda m: m.repo_id.lower())


def matcher_folder_problem(folder: str | os.PathLike, use: str) -> str:
    """Why ``folder`` cannot serve as the ``use`` matcher model ("" when it can). Reads one small JSON file."""
    m = MATCHER_MODELS[use]
    path = Path(os.path.expanduser(os.fspath(folder)))
    if not path.is_dir():
        return f"the {m.label} folder {folder} does not exist"
    config = _read_json(path / "config.json")
    if config is None:
        return f"{folder} is not a model folder (no readable config.json)"
    if config.get("model_type") not in m.model_types:
        return f"{folder} holds a {config.get('model_type')!r} model, not {m.label}"
    if not any(path.glob("*.safetensors")):
        return f"{folder} has no .safetensors weights (other formats are not loaded)"
    return ""


def retrieval_section(settings: Any) -> dict[str, Any]:
    """``settings.extra["retrieval"]`` (a ``core.settings.Settings``), created when missing; the other
    extra keys are left alone. ``retrieval.service.retrieval_settings`` reads the same dict."""
    cfg = settings.extra.get("retrieval")
    if not isinstance(cfg, dict):
        cfg = settings.extra["retrieval"] = {}
    return cfg


def set_matcher_folder(settings: Any, use: str, folder: str | None) -> None:
    """Point the ``use`` matcher at ``folder`` in the settings (None clears it); the caller saves."""
    cfg = retrieval_section(settings)
    key = MATCHER_MODELS[use].settings_key
    if folder:
        cfg[key] = str(folder)
    else:
        cfg.pop(key, None)
