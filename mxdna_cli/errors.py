"""Error types that the command line maps to exit codes.

`DataError` (exit 1) is for bad input data: a missing file, malformed FASTA or BED, an unknown
contig, a region past a contig end, an empty record. `UsageError` (exit 2) is for options that
cannot work together or are not supported. Messages are one line and name the file and the line
or record, because the CLI prints them as they are.
"""


class MxdnaError(Exception):
    """Base class: an expected failure with a one-line message for the user."""

    exit_code = 1


class DataError(MxdnaError):
    """The input data is wrong (exit code 1)."""

    exit_code = 1


class UsageError(MxdnaError):
    """The options are wrong or conflict (exit code 2)."""

    exit_code = 2
