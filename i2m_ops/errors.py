"""The CLI's one domain exception: the run could not start (exit code 3)."""


class CannotStart(Exception):
    """Bad arguments, inventory or variables, or a lock held by another run."""
