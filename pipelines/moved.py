"""Module names of before the layer packages (0.1), kept importable for users and modality
plugins: ``import pipelines.staging`` gives ``pipelines.toolkit.stage``, the same module object,
with a ``DeprecationWarning`` naming the new place. Deprecated: the old names go in 0.3.

This is the one list of them; docs/architecture.md has the layer picture.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# old name -> where it lives now
MOVED: dict[str, str] = {
    "pipelines.staging": "pipelines.toolkit.stage",
    "pipelines.smk": "pipelines.toolkit.smk",
    "pipelines.units": "pipelines.describe.support_units",
    "pipelines.metadata": "pipelines.describe.metadata",
    "pipelines.templates": "pipelines.describe.templates",
    "pipelines.jsonld": "pipelines.describe.jsonld",
    "pipelines.dcat": "pipelines.describe.dcat",
    "pipelines.catalog": "pipelines.describe.catalog",
    "pipelines.report": "pipelines.describe.report",
    "pipelines.report_i18n": "pipelines.describe.report_i18n",
    "pipelines.provenance": "pipelines.describe.provenance",
    "pipelines.usage": "pipelines.describe.usage",
    "pipelines.bagit_export": "pipelines.describe.bagit_export",
    "pipelines.embargo": "pipelines.describe.embargo",
    "pipelines.policy": "pipelines.store.policy",
    "pipelines.workflow": "pipelines.run.workflow",
    "pipelines.worklock": "pipelines.run.worklock",
    "pipelines.runner": "pipelines.run.runner",
    "pipelines.publishing": "pipelines.run.publishing",
    "pipelines.privacy_gate": "pipelines.run.privacy_gate",
    "pipelines.monitoring": "pipelines.orchestrate.monitoring",
    "pipelines.monitoring_service": "pipelines.orchestrate.service",
    "pipelines.flows": "pipelines.orchestrate.flows",
    "pipelines.inbox": "pipelines.orchestrate.inbox",
    "pipelines.service_guard": "pipelines.orchestrate.service_guard",
    "pipelines.cli_curation": "pipelines.cli.curation",
    "pipelines.cli_data": "pipelines.cli.data",
    "pipelines.cli_policy": "pipelines.cli.policy",
    "pipelines.cli_preservation": "pipelines.cli.preservation",
    "pipelines.dataservice.ids": "pipelines.access.ids",
}


def _warn(old: str) -> None:
    warnings.warn(
        f"{old} moved to {MOVED[old]}; the old name goes in binds-pipelines 0.3",
        DeprecationWarning,
        stacklevel=3,
    )


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and hands out the module at its new place (one module object)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(spec.name)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        # the import system stamped the old name's spec on the module: give it back its own
        module.__spec__ = importlib.machinery.PathFinder.find_spec(
            module.__name__, sys.modules[module.__name__.rpartition(".")[0]].__path__
        )


def attribute(name: str) -> ModuleType:
    """``from pipelines import runner``: the module under its old short name."""
    old = f"pipelines.{name}"
    if old not in MOVED:
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    _warn(old)
    return importlib.import_module(MOVED[old])


def install() -> None:
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
