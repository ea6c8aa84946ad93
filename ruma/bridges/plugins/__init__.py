"""Twisted plugin package for bridge modules (objects providing ``IBridgeModule``).

Extensible like ``twisted.plugins``: other distributions may ship modules in their own
``ruma/bridges/plugins/`` directory.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # noqa: F821
__all__: list[str] = []
