"""Component types: every module of this package registers one.

Importing the package imports each module, so a new type needs nothing
but its own module here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
