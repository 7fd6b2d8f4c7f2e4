"""Directories of reference data a test compares with, named by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def directory_named_by(variable: str, without: str) -> Path:
    """The directory $`variable` names; the test is skipped, saying `without`, when it is
    unset, and fails when it names no directory."""
    location = os.environ.get(variable)
    if not location:
        pytest.skip(f"{variable} is not set: {without}")
    directory = Path(location)
    if not directory.is_dir():
        pytest.fail(f"{variable}={location} is not a directory")
    return directory
