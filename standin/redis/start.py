"""Starts redis with REDIS_PASSWORD from the environment, passed in a config file rather than on
the command line, where every process on the host could read it."""

import os
import sys
import tempfile

password = os.environ.get("REDIS_PASSWORD", "")
if not password:
    sys.exit("REDIS_PASSWORD is empty: refusing to start redis without a password")

# Every byte hex-escaped inside double quotes: redis reads any password back exactly.
quoted = '"' + "".join(f"\\x{byte:02x}" for byte in password.encode()) + '"'
config = f"""bind 0.0.0.0
port 6379
dir /data
appendonly yes
requirepass {quoted}
"""
fd, path = tempfile.mkstemp(prefix="redis-", suffix=".conf")
with os.fdopen(fd, "w") as handle:
    handle.write(config)
os.execvp("redis-server", ["redis-server", path])
