"""Which services exist: every package under ``services/`` with an ``app`` module is one.

A new service is picked up by ``kefu up``, ``kefu serve`` and the CLI without editing this file. Conventions:
``services/<name>/app.py`` defines ``main()``; ``services/<name>/settings.py`` defines ``Settings`` (a
``KefuSettings`` subclass whose ``endpoints()`` says where it listens); an optional ``services/<name>/cli.py``
defines ``register(app)`` to add commands; an optional ``services/<name>/sidecars.py`` defines
``sidecars(settings) -> list[Sidecar]`` for processes the service needs next to it (e.g. Triton for the builder).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from types import ModuleType

import services

#: Start order where it matters (consumers before producers is nicer but not required; Kafka buffers).
PREFERRED_ORDER = ["trainer", "builder", "gateway", "feedback", "ingest"]


def service_names() -> list[str]:
    found = [
        m.name
        for m in pkgutil.iter_modules(services.__path__)
        if m.ispkg and importlib.util.find_spec(f"services.{m.name}.app") is not None
    ]
    rank = {n: i for i, n in enumerate(PREFERRED_ORDER)}
    return sorted(found, key=lambda n: (rank.get(n, len(rank)), n))


def optional_module(name: str, module: str) -> ModuleType | None:
    if importlib.util.find_spec(f"services.{name}.{module}") is None:
        return None
    return importlib.import_module(f"services.{name}.{module}")


def service_settings(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"services.{name}.settings").Settings()
