"""i2m-ops: runs the project's playbooks through ansible-runner, one report and one exit code."""

from importlib.metadata import version

__version__ = version("i2m-ops")
