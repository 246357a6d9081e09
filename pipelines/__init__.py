"""binds-pipelines.

Layers, bottom up (docs/architecture.md): ``errors``, ``resources``, ``progress``, ``store``,
``access`` -> ``toolkit`` -> ``modalities`` -> ``describe`` -> ``run`` -> ``orchestrate``,
``dataservice`` -> ``cli``. Old module names (``pipelines.runner`` ...) still import, with a
deprecation warning: :mod:`pipelines.moved`.
"""

from pipelines import moved as _moved

_moved.install()


def __getattr__(name: str):
    return _moved.attribute(name)
