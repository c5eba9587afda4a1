"""The errors a user can fix. The command line reports each as one line on stderr, with no
traceback, and exits with its exit_code (SPEC section 7)."""

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
