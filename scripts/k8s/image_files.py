"""What only an image's own files tell, read in its root file system (mounted by
``image_runtime.py``): a user's numbers, from its /etc/passwd and /etc/group, and where a
path leads, its symlinks followed inside the image rather than on the host.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath


def numeric_user(root: Path, user: str) -> tuple[int, int] | None:
    """``user[:group]``, by number or by name from the image's /etc/passwd and /etc/group."""
    uid, _, gid = user.partition(":")
    users = _table(root / "etc/passwd")  # name:x:uid:gid:...
    if uid.isdigit():
        entry = next((f for f in users.values() if f[2] == uid), None)
    elif (entry := users.get(uid)) is None:
        return None
    number = int(entry[2]) if entry else int(uid)
    if not gid:
        return number, int(entry[3]) if entry and len(entry) > 3 else 0
    if gid.isdigit():
        return number, int(gid)
    group = _table(root / "etc/group").get(gid)  # name:x:gid:...
    return (number, int(group[2])) if group else None


def in_image(root: Path, path: str) -> str:
    """Where ``path`` leads inside the image at ``root``, its symlinks followed there."""
    todo = list(PurePosixPath(path).parts[1:])
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)
        if here.is_symlink() and hops < 40:  # 40: as the kernel, against loops
            hops += 1
            link = PurePosixPath(os.readlink(here))
            if link.is_absolute():
                done = []
                todo = list(link.parts[1:]) + todo
            else:
                todo = list(link.parts) + todo
            continue
        if part != ".":
            done.append(part)
    return "/" + "/".join(done)


def _table(path: Path) -> dict[str, list[str]]:
    """/etc/passwd or /etc/group: name -> its fields."""
    rows: dict[str, list[str]] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if len(fields) >= 3:
                rows[fields[0]] = fields
    return rows
