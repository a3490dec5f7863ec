"""One run at a time per inventory: an flock on a file that names its holder.

The kernel drops an flock when its process dies, so a lock left by a dead run is free: it is
taken over, with a warning naming the run that left it.
"""

import fcntl
import getpass
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from i2m_ops.errors import CannotStart


class InventoryLock:
    def __init__(self, lock_dir: Path, inventory: Path, command: str):
        digest = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:16]
        self.path = lock_dir / f"inventory-{digest}.lock"
        self.holder = {"pid": os.getpid(), "user": getpass.getuser(), "host": socket.gethostname(),
                       "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "command": command, "inventory": str(inventory)}
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _read_holder(handle.read())
            handle.close()
            raise CannotStart(f"another run holds the lock on {self.holder['inventory']}: pid {holder.get('pid')}, "
                              f"user {holder.get('user')}, host {holder.get('host')}, since {holder.get('started_at')}, "
                              f"command '{holder.get('command')}' (lock file {self.path})") from None
        handle.seek(0)
        previous = _read_holder(handle.read())
        if previous:
            print(f"warning: taking over the lock left by pid {previous.get('pid')} ({previous.get('command')}, "
                  f"since {previous.get('started_at')}): that run is gone", file=sys.stderr)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(self.holder))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc):
        self.handle.seek(0)
        self.handle.truncate()
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _read_holder(text: str) -> dict:
    try:
        return json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"pid": "unknown", "command": "unreadable lock file"}
