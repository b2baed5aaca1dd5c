"""Artifacts that are never half-written and never silently edited: temp sibling + rename, and a checksum
the next stage verifies.

Every stage writes its output folder through `atomic_dir`: the folder is built under a hidden
temporary sibling and renamed into place only after MANIFEST.json is written, so an interrupted job
leaves no folder that looks complete. The next stage calls `verify_manifest` before reading.
A single file that another stage reads (rouge.json, accuracy.ok, benchmark.csv, its plot, a dataset)
is written with `atomic_file(..., checksum=True)`, which adds `<file>.sha256` (sha256sum's format);
its reader calls `verify_checksum` first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import KnownError

MANIFEST = "MANIFEST.json"


class ArtifactError(KnownError, RuntimeError):
    """An artifact folder is missing, incomplete or was modified after it was written."""


def size_on_disk(artifact: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if artifact.is_file():
        return artifact.stat().st_size
    return sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file())


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _temp_sibling(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def clean_stale_temps(target: Path) -> None:
    """Remove temp siblings left by a killed earlier attempt at `target`."""
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(tmp: Path, mode: int) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; artifacts get the usual umask mode."""
    os.chmod(tmp, mode & ~_umask())


def _replace(tmp: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.replace(tmp, target)


FICLONE = 0x40049409  # linux/fs.h: share the source's extents copy-on-write (btrfs, XFS, bcachefs …)


def copy_file(src: Path, dst: Path) -> None:
    """A copy that shares nothing writable with `src` (never a hard link): a reflink where the filesystem
    offers one, else the bytes. Timestamps and mode follow the source."""
    import fcntl

    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as source, open(dst, "wb") as target:
        try:
            fcntl.ioctl(target.fileno(), FICLONE, source.fileno())
        except OSError:
            shutil.copyfileobj(source, target, 1 << 24)
    shutil.copystat(src, dst)


def ensure_free_space(target: Path, needed_bytes: int) -> None:
    """Refuse up front when the output's filesystem cannot hold it (with 10% headroom)."""
    probe = target.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes * 1.1:
        raise ArtifactError(f"not enough free disk for {target}: it needs about {needed_bytes / 2**20:.0f} MiB and "
                            f"{probe} has {free / 2**20:.0f} MiB free; free some space or move results/ elsewhere")


@contextlib.contextmanager
def atomic_dir(target: str | Path, meta: dict[str, Any] | None = None, needed_bytes: int = 0) -> Iterator[Path]:
    """Yield a temp folder; on success write its manifest and rename it to `target`."""
    target = Path(target)
    if needed_bytes:
        ensure_free_space(target, needed_bytes)
    clean_stale_temps(target)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        write_manifest(tmp, meta or {})
        for entry in tmp.rglob("*"):  # writers that go through mkstemp (safetensors, copies of 0600 files)
            _publish_mode(entry, 0o777 if entry.is_dir() or os.access(entry, os.X_OK) else 0o666)
        _publish_mode(tmp, 0o777)
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: str | Path) -> Path:
    return Path(f"{path}{CHECKSUM_SUFFIX}")


def write_checksum(path: str | Path) -> None:
    path = Path(path)
    with atomic_file(checksum_path(path)) as handle:
        handle.write(f"{sha256_file(path)}  {path.name}\n")


def verify_checksum(path: str | Path) -> Path:
    """`path`, once its bytes match the sha256 its writer recorded beside it."""
    path, sidecar = Path(path), checksum_path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; run the step that writes it")
    if not sidecar.is_file():
        raise ArtifactError(f"{path} has no {sidecar.name}: it was not written by trtflow (or by an older version); "
                            f"delete {path} and rerun the step that writes it")
    recorded = (sidecar.read_text(encoding="utf-8").split() or [""])[0]
    if sha256_file(path) != recorded:
        raise ArtifactError(f"{path} does not match the sha256 in {sidecar.name} (modified after it was written); "
                            f"delete {path} and rerun the step that writes it")
    return path


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "w", checksum: bool = False) -> Iterator[Any]:
    """Open a temp sibling for writing; rename it to `target` only when the block succeeds (then, with
    `checksum`, record its sha256 beside it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp_name, mode, encoding=encoding) as handle:
            yield handle
        _publish_mode(Path(tmp_name), 0o666)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if checksum:
        write_checksum(target)


def write_json(target: str | Path, obj: Any, checksum: bool = False) -> None:
    with atomic_file(target, checksum=checksum) as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ArtifactError(f"{path} is missing") from err
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path} is not valid JSON ({err}); delete it and rerun the step that writes it") from err


def write_manifest(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(folder).as_posix()
        files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {**meta, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def verify_manifest(folder: str | Path, check_hashes: bool = True) -> dict[str, Any]:
    """Check that `folder` holds exactly the files its manifest lists, with their sizes and hashes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} does not exist; run the step that produces it")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{folder} has no {MANIFEST}: it was not written by trtflow or its writer was interrupted; "
            f"delete {folder} and rerun"
        )
    manifest = read_json(manifest_path)
    for rel, entry in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            raise ArtifactError(f"{path} is listed in {manifest_path} but missing; delete {folder} and rerun")
        size = path.stat().st_size
        if size != entry["size"]:
            raise ArtifactError(
                f"{path} has {size} bytes but {manifest_path} records {entry['size']} (truncated or modified); "
                f"delete {folder} and rerun"
            )
        if check_hashes and sha256_file(path) != entry["sha256"]:
            raise ArtifactError(
                f"{path} does not match the sha256 in {manifest_path} (modified after it was written); "
                f"delete {folder} and rerun"
            )
    return manifest
