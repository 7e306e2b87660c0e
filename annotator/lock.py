"""One run at a time per output folder: a kernel lock that goes away with the process holding it."""
from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".annotate-lock"  # holds the holder's pid, host and start time, for the message


class OutputBusy(Exception):
    """Another annotate run is writing into the same output folder."""


@contextmanager
def lock_output(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run, or raise OutputBusy naming the run that holds it.

    flock(2) is released by the kernel when its holder ends, even by SIGKILL,
    so a killed run never leaves the folder locked.
    """
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "holder unknown"
            raise OutputBusy(f"{out} is in use by another annotate run ({holder}); "
                             "wait for it to end, or write to another --out") from None
        _write_holder(fd)
        yield
    finally:
        os.close(fd)


def _write_holder(fd: int) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
    except OSError:  # a full disk: the lock holds all the same, and the run reports the disk itself
        pass
