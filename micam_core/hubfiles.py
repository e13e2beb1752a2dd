"""Model files from the Hub into the Hugging Face cache: streamed, capped and deadline-bound.

``huggingface_hub`` downloads a file whole, with no size cap and no deadline on the body: weights
declared as 1000 B but served as 400 MB stayed in the cache. Here every file is streamed through
:func:`micam_core.hubhttp.download` and stops as soon as it passes what the Hub's file list declared
(or the server's limit) or its deadline; the partial file is deleted. A finished file is checked
against its LFS checksum and placed where ``huggingface_hub`` keeps it (``blobs/``, a ``snapshots/``
link, ``refs/``), so an offline load and timm's own loader find it later.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hub import METADATA_DEADLINE_S
from .hubhttp import HubError, download, endpoint_url, get_json

log = logging.getLogger(__name__)

LOAD_DEADLINE_S = 25.0  # a model load's Hub requests, all together (under 30 s), for weights up to MIN_RATE x 1 s
MIN_RATE = 10 * 2**20  # bytes a second: larger weights get (size / MIN_RATE) s more
MAX_INFO_BYTES = 8 << 20
_HEX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# The weight file timm's local-dir loader reads first (timm.models._hub._PREFERRED_FILES), then by extension.
PREFERRED = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
             "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
             "open_clip_pytorch_model.pth")
EXT_PRIORITY = (".safetensors", ".pth", ".pth.tar", ".bin")


@dataclass(frozen=True)
class RepoFile:
    """One file of a repository as the Hub's file list declares it."""

    name: str
    size: int | None
    blob: str | None  # the name huggingface_hub gives its blob: the LFS sha256, else the git blob id
    sha256: str | None  # LFS files only


@dataclass(frozen=True)
class Listing:
    """A repository at one commit: its files, and when its Hub requests must all have ended."""

    repo_id: str
    revision: str
    commit: str
    files: dict[str, RepoFile]
    started: float

    def weights(self, names: tuple[str, ...] = ()) -> RepoFile | None:
        """The weight file to read: the first of ``names`` present, else the one timm's local-dir loader picks."""
        for name in names or PREFERRED:
            if name in self.files:
                return self.files[name]
        if names:
            return None
        for ext in EXT_PRIORITY:
            found = sorted(n for n in self.files if "/" not in n and n.endswith(ext))
            if found:
                return self.files[found[0]]
        return None

    def deadline_s(self, size: int | None) -> float:
        """Seconds left of this load's Hub deadline, for a download of ``size`` bytes."""
        budget = LOAD_DEADLINE_S + (size or 0) / MIN_RATE
        return max(0.1, self.started + budget - time.monotonic())

    @property
    def folder(self) -> Path:
        """The snapshot folder of this commit in the Hugging Face cache."""
        return repo_folder(self.repo_id) / "snapshots" / self.commit


def repo_folder(repo_id: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))


def listing(repo_id: str, revision: str | None = None) -> Listing:
    """The repository's file list with sizes and checksums, and its commit (:class:`HubError`)."""
    started = time.monotonic()
    revision = revision or "main"
    url = f"{endpoint_url()}/api/models/{repo_id}/revision/{revision}"
    info = get_json(url, [("blobs", "true")], deadline_s=METADATA_DEADLINE_S, max_bytes=MAX_INFO_BYTES)
    commit = info.get("sha") if isinstance(info, dict) else None
    siblings = info.get("siblings") if isinstance(info, dict) else None
    if not isinstance(commit, str) or not _HEX.match(commit) or not isinstance(siblings, list):
        raise HubError("the Hub's answer could not be read")
    files = {}
    for entry in siblings:
        file = _repo_file(entry)
        if file is not None:
            files[file.name] = file
    return Listing(repo_id, revision, commit, files, started)


def fetch(listing: Listing, file: RepoFile, max_bytes: int) -> Path:
    """``file`` of the repository in the cache (downloaded unless there), or :class:`HubError`.

    The download stops at ``min(declared size, max_bytes)`` bytes or at the load's deadline.
    """
    target = listing.folder / file.name
    if target.is_file() and (file.size is None or target.stat().st_size == file.size):
        return target
    if file.size is not None and file.size > max_bytes:
        raise HubError(f"{file.name} has {_mb(file.size)}; the limit here is {_mb(max_bytes)}")
    cap = min(file.size, max_bytes) if file.size is not None else max_bytes
    blobs = repo_folder(listing.repo_id) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / f"{file.blob or 'download'}.{uuid.uuid4().hex}.incomplete"
    url = f"{endpoint_url()}/{listing.repo_id}/resolve/{listing.commit}/{file.name}"
    declared = "declared" if file.size is not None and file.size <= max_bytes else "allowed"
    digest = download(url, partial, deadline_s=listing.deadline_s(file.size), max_bytes=cap,
                      too_large=f"the Hub sent more than the {_mb(cap)} {declared} for {file.name}",
                      late=f"the Hub did not send {file.name} in {{s}} s")
    if file.sha256 is not None and digest != file.sha256:
        partial.unlink(missing_ok=True)
        raise HubError(f"{file.name} from the Hub does not match its checksum")
    blob = blobs / (file.blob or digest)
    os.replace(partial, blob)
    _link(blob, target)
    if listing.revision != listing.commit:
        refs = repo_folder(listing.repo_id) / "refs" / listing.revision
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(listing.commit)
    log.info("downloaded %s of %s (%d bytes)", file.name, listing.repo_id, blob.stat().st_size)
    return target


def _link(blob: Path, target: Path) -> None:
    """``target`` (in the snapshot) pointing at ``blob``, relative, as huggingface_hub does (a copy without links)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(blob, target.parent), target)
    except OSError:
        shutil.copyfile(blob, target)


def _repo_file(entry: Any) -> RepoFile | None:
    """A :class:`RepoFile` from one entry of the file list (``None`` for a name that is not a plain path)."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("rfilename")
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/") or "\\" in name:
        return None
    lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else {}
    sha256 = lfs.get("sha256") if isinstance(lfs.get("sha256"), str) else None
    sha256 = sha256.lower() if sha256 and re.fullmatch(r"[0-9a-fA-F]{64}", sha256) else None
    blob_id = entry.get("blobId") if isinstance(entry.get("blobId"), str) else None
    blob = sha256 or (blob_id.lower() if blob_id and _HEX.match(blob_id.lower()) else None)
    size = lfs.get("size", entry.get("size"))
    size = int(size) if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    return RepoFile(name, size, blob, sha256)


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} kB" if n >= 2**10 else f"{n} B"
