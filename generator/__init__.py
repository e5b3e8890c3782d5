"""The capital-letter circuit report: experiments on why GPT-2 predicts " He" after ". "."""

__version__ = "0.1.0"


class ReportError(Exception):
    """An error the user can fix: the message names the input, the problem and the fix."""
