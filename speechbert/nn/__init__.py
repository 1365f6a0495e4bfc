"""Generic torch building blocks shared by model families (no Lightning, no Hydra).

Imports only :mod:`speechbert.errors` and :mod:`speechbert.audio` from the package.
"""
