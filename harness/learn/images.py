"""Image files checked before a study writes anything: each decoded whole once (a half-written JPEG passes PIL's
`verify()`; an image over PIL's pixel limit is a possible decompression bomb), and what passed remembered by path,
modification time and size, so a rerun decodes only new or changed files."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import PIL
from PIL import Image


class BrokenImage(ValueError):
    """An image file that cannot be decoded; the message names it."""

    def __init__(self, message: str):
        # raised in a DataLoader worker, it comes back as "Caught BrokenImage ... Original Traceback ...":
        # keep only its own last line, so the user reads one message, not a worker's traceback
        last = message.rstrip().splitlines()[-1] if message.strip() else message
        super().__init__(last.partition("BrokenImage: ")[2] or message)


def broken_image_message(path: str | Path, error: Exception) -> str:
    return f"cannot read image {path} ({type(error).__name__}: {error}); remove or replace that file"


def too_large_message(path: str | Path, error: Exception) -> str:
    return (f"image {path} is too large to decode safely ({error}); PIL refuses images over "
            f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,} pixels as possible decompression bombs: "
            "shrink or remove that file")


def cache_dir() -> Path:
    """What the harness can recompute but would rather not: `$HARNESS_CACHE`, else `harness/` in the user's cache
    folder. Never a dataset's own folder, which may be read-only or shared."""
    if os.environ.get("HARNESS_CACHE"):
        return Path(os.environ["HARNESS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness"


Stamp = tuple[str, int, int]  # (absolute path, mtime in ns, size): a file as it was when it decoded whole

_decoded: set[Stamp] = set()  # images decoded whole in this process


def _stamp(file: str) -> Stamp:
    try:
        stat = os.stat(file)
    except OSError as error:  # gone, or unreadable, since the folder was listed
        raise BrokenImage(broken_image_message(file, error)) from None
    return os.path.abspath(file), stat.st_mtime_ns, stat.st_size


def _checked_file(folder: str) -> Path:
    return cache_dir() / "checked-images" / f"{hashlib.sha256(os.path.abspath(folder).encode()).hexdigest()[:16]}.json"


def _checking_rules() -> dict[str, object]:
    """What a cached pass depends on beyond the file itself: another PIL, or another pixel limit, checks again."""
    return {"pil": PIL.__version__, "max_pixels": Image.MAX_IMAGE_PIXELS}


def _read_checked(folder: str) -> set[Stamp]:
    try:
        cached = json.loads(_checked_file(folder).read_text())
        if cached["rules"] != _checking_rules():
            return set()
        return {(path, int(mtime), int(size)) for path, mtime, size in cached["images"]}
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: check every image again
        return set()


def _write_checked(folder: str, stamps: list[Stamp]) -> None:
    path = _checked_file(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"folder": os.path.abspath(folder), "rules": _checking_rules(), "images": stamps}))
        os.replace(tmp, path)  # atomic: two studies checking the same folder never read half a file
    except OSError:  # a read-only or full cache folder: the next check decodes the images again, nothing worse
        pass


def decode_whole(file: str) -> None:
    """Decode every pixel of `file` as a run would, or raise a `BrokenImage` naming it: `verify()` alone passes a
    half-written JPEG, and an image over PIL's pixel limit is refused here, not in a run."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit, under twice it
            with Image.open(file) as image:
                image.verify()  # the file's structure, PNG checksums included (decoding skips some)
            with Image.open(file) as image:
                image.convert("RGB")  # every pixel, in the mode runs read it in
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BrokenImage(too_large_message(file, error)) from None
    except (OSError, ValueError, SyntaxError) as error:  # UnidentifiedImageError and truncation are OSErrors
        raise BrokenImage(broken_image_message(file, error)) from None


def check_files(folder: str, files: list[str]) -> None:
    """Every file of `folder`'s dataset decodes whole, or a `BrokenImage` names the first that does not."""
    stamps = [_stamp(file) for file in files]
    known = _decoded | _read_checked(folder)
    passed, new = [s for s in stamps if s in known], []
    try:
        for stamp in stamps:
            if stamp not in known:
                decode_whole(stamp[0])
                new.append(stamp)
    finally:
        _decoded.update(new)
        if new:  # those that passed, even when one did not: fixing it rechecks only it
            _write_checked(folder, passed + new)
