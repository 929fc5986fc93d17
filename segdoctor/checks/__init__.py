"""Built-in checks, one module per family. Importing this package registers them all."""

from __future__ import annotations

import pkgutil
from importlib import import_module

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        import_module(f"{__name__}.{_info.name}")
