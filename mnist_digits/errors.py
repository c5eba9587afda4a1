"""The errors a user can fix. The command line reports each as one line on stderr, with no
traceback, and exits with its exit_code (SPEC section 7)."""

import sys

# README's set-up, and the names pip installs by where they differ from the import's
SET_UP = "python3 -m venv .venv && .venv/bin/python -m pip install -r requirements-dev.txt"
PACKAGES = {"PIL": "Pillow", "ai_edge_litert": "ai-edge-litert"}


class UserError(Exception):
    """A mistake the user can fix: reported as one line, no traceback."""

    exit_code = 1


class UsageError(UserError):
    """A bad flag or path on the command line (exit status 2, as argparse uses)."""

    exit_code = 2


def first_line(error):
    """An exception's message in one line (its type where it has none), for a user's error."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class Interrupted(UserError):
    """Ctrl-C or SIGTERM during training (exit status 130, as a shell reports Ctrl-C)."""

    exit_code = 130


class TrainingDiverged(UserError):
    """The loss exploded (or became NaN): nothing worth saving was learned."""


def missing_package_in_one_line(kind, error, traceback):
    """sys.excepthook for the script run as a program: a Python without the requirements (not
    README's venv) is told in one line which package it lacks and how to set up, where it would
    end in a traceback. Other exceptions, and a module of ours not found, as Python reports them."""
    name = getattr(error, "name", None) or ""
    if not issubclass(kind, ModuleNotFoundError) or not name or name.startswith("mnist_digits"):
        return sys.__excepthook__(kind, error, traceback)
    module = name.partition(".")[0]
    print(f"error: this Python ({sys.executable}) has no {PACKAGES.get(module, module)} (module "
          f"{module}): run the program in the venv README sets up: {SET_UP}, then source "
          ".venv/bin/activate", file=sys.stderr)
