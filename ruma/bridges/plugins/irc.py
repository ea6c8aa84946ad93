"""The IRC bridge module, as a Twisted plugin (``bridges: irc:`` in homeserver.yaml)."""

from ruma.bridges.irc.service import IrcBridgeModule

irc_bridge = IrcBridgeModule()
