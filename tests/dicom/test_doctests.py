"""The examples in `tessel.dicom` docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["charsets", "document", "levels", "syntaxes", "vrs"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"tessel.dicom.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
