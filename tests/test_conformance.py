"""The conformance kit, run over every installed method (as timm tests every model)."""

from __future__ import annotations

import pytest

from condensekit import plugins
from condensekit.testing.conformance import MethodConformance


class TestEveryInstalledMethod(MethodConformance):
    @pytest.fixture(scope="class", params=plugins.names("method"))
    @classmethod
    def method_name(cls, request: pytest.FixtureRequest) -> str:
        return request.param


class TestASubclassNamingItsMethod(MethodConformance):
    """The route docs/plugins.md gives plugin authors: subclass the kit and set ``method``
    (here the third-party fixture plugin, cheap to run)."""

    method = "herding"
