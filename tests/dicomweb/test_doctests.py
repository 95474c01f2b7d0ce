"""The examples in `tessel.dicomweb` and `tessel.catalog.matching` docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["tessel.dicomweb.multipart", "tessel.dicomweb.json", "tessel.dicomweb.render",
           "tessel.catalog.matching"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
