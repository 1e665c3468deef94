"""Output files that exist complete or not at all.

Writers write to a hidden temporary file beside the final one and rename it into place
only when the file is finished; an interrupted run leaves no file under a final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from facepriv.errors import MediaError

_UMASK = os.umask(0)
os.umask(_UMASK)
_TEMP_MARK = ".partial"
# ".fp-<16 hex digits of the final name's hash>.<8 characters of mkstemp>.partial<suffix>":
# under 50 bytes whatever the final name, so a name the file system holds always has a
# temporary name it holds too.
_TEMP_NAME = re.compile(rf"\.fp-(?P<digest>[0-9a-f]{{16}})\.[a-z0-9_]{{8}}{re.escape(_TEMP_MARK)}.*")
# Before: ".<stem>.<8 characters><_TEMP_MARK><suffix>"; still removed when found.
_OLD_TEMP_NAME = re.compile(rf"\.(?P<stem>.+)\.[a-z0-9_]{{8}}{re.escape(_TEMP_MARK)}(?P<suffix>.*)")
# What open, mkdir and rename say when the file system cannot hold a name: too long, or
# characters it does not accept (FAT, exFAT, NTFS).
NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL}


class UnwritableName(MediaError):
    """The output folder's file system cannot hold this output's name: that file fails alone."""

    exit_code = 1

    def __init__(self, path: Path, err: OSError) -> None:
        self.reason = (
            f"the file system cannot hold the output name ({err.strerror or err}): shorten the "
            "input's name or folder path, or choose an output_dir with a shorter path"
        )
        super().__init__(f"cannot write '{path}': {self.reason}")


def _temp_digest(final_name: str) -> str:
    return hashlib.sha256(final_name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class AtomicOutput:
    """A temporary path that becomes ``final_path`` on ``commit()``."""

    def __init__(self, final_path: Path) -> None:
        self.final_path = final_path
        suffix = final_path.suffix if len(final_path.suffix) <= 16 else ""
        with name_errors(final_path):
            final_path.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(
                prefix=f".fp-{_temp_digest(final_path.name)}.", suffix=f"{_TEMP_MARK}{suffix}",
                dir=final_path.parent,
            )
        os.close(handle)
        self.temp_path = Path(name)
        # mkstemp creates 0600 files; outputs should get the permissions of any new file.
        os.chmod(self.temp_path, 0o666 & ~_UMASK)

    def commit(self) -> Path:
        """Rename the finished file into place, its data on disk first.

        Without the fsync a power cut soon after the rename could leave an empty or
        partial file under the final name, which is what this class exists to prevent.
        """
        with open(self.temp_path, "rb") as handle:
            os.fsync(handle.fileno())
        with name_errors(self.final_path):
            os.replace(self.temp_path, self.final_path)
        _fsync_dir(self.final_path.parent)
        return self.final_path

    def discard(self) -> None:
        self.temp_path.unlink(missing_ok=True)


def remove_temp_files(final_paths: Iterable[Path]) -> list[Path]:
    """Delete the temporary files that AtomicOutputs for these paths left behind.

    Only a process killed outright (SIGKILL, power cut) leaves one. Call it when no
    process is writing these outputs: a batch job does, before and after its workers run.
    """
    wanted: dict[Path, set[str]] = {}
    for path in final_paths:
        wanted.setdefault(path.parent, set()).add(path.name)
    removed = []
    for directory, names in wanted.items():
        digests = {_temp_digest(name) for name in names}
        try:
            entries = list(os.scandir(directory))
        except OSError:  # not created yet
            continue
        for entry in entries:
            match, old = _TEMP_NAME.fullmatch(entry.name), _OLD_TEMP_NAME.fullmatch(entry.name)
            if (match and match["digest"] in digests) or (old and old["stem"] + old["suffix"] in names):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def name_errors(path: Path) -> Iterator[None]:
    """Creating or renaming ``path``: a name its file system cannot hold fails that file
    alone (UnwritableName); other errors stop the run with one line."""
    try:
        yield
    except OSError as err:
        if err.errno in NAME_ERRNOS:
            raise UnwritableName(path, err) from None
        raise MediaError(
            f"cannot write '{path}' ({err.strerror or err}): check that output_dir is on a disk "
            "you can write to, with free space"
        ) from None


def ensure_writable_dir(directory: Path, setting: str) -> Path:
    """Create ``directory`` if needed and prove it is writable, before the first frame."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise MediaError(
            f"{setting} '{directory}' is not writable ({reason}): choose a folder you can write to"
        ) from None
    return directory


def check_replaceable(path: Path, source: Path | None, may_replace: bool) -> None:
    """Fail if the existing output ``path`` must stay: it is the input itself, or it was not
    written by facepriv for this input (``may_replace`` False)."""
    if source is not None and os.path.samefile(path, source):
        raise MediaError(
            f"output '{path}' would replace its input: choose an output_dir outside the source folder"
        )
    if not may_replace:
        raise MediaError(
            f"output '{path}' already exists: delete it, choose another output_dir, "
            "or set output.media_writer.overwrite: true"
        )


def write_text_atomically(path: Path, text: str) -> Path:
    """Write a small text file (a report) so that it appears complete or not at all."""
    output = AtomicOutput(path)
    try:
        with write_errors_reported(path):
            output.temp_path.write_text(text, encoding="utf-8")
            return output.commit()
    except BaseException:
        output.discard()
        raise


@contextlib.contextmanager
def write_errors_reported(path: Path, *also: type[BaseException]) -> Iterator[None]:
    """Turn a failed write (disk full, file too large, I/O error; ``also``: a library's
    own write errors) into a MediaError that says so in one line.

    The caller discards the unfinished file: a run stops there with that line, a batch
    job marks the file failed with it.
    """
    try:
        yield
    except (OSError, *also) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise MediaError(
            f"cannot write '{path}' ({reason}); the unfinished file was discarded: free space "
            "on that disk or choose another output folder, then run again"
        ) from None


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def inside_output_dir(name: str) -> PurePosixPath:
    """An input's output name as a path relative to output_dir; a name that is absolute or
    climbs out with '..' keeps only its file name (never write outside output_dir)."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        relative = PurePosixPath(relative.name)
    return relative
