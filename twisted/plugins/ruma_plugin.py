"""The ``twistd ruma`` plugin. Kept tiny: twistd imports ``ruma.tap`` only when it runs."""

from twisted.application.service import ServiceMaker

ruma = ServiceMaker(
    "Ruma",
    "ruma.tap",
    "A federation-first Matrix homeserver that hosts bridges",
    "ruma",
)
