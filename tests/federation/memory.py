"""In-memory federation for unit tests: servers' resources reached through real HTTP
parsing (treq's RequestTraversalAgent), no sockets."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, fail
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import IResource
from zope.interface import implementer


@implementer(IAgent)
class MemoryFederationAgent:
    """Routes ``matrix-federation://<server>/...`` to that server's resource."""

    def __init__(self) -> None:
        self._agents: dict[str, RequestTraversalAgent] = {}
        self.down: set[str] = set()

    def add_server(self, server_name: str, resource: IResource) -> None:
        self._agents[server_name] = RequestTraversalAgent(resource)

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: IBodyProducer | None = None) -> Deferred[IResponse]:
        parts = urlsplit(uri.decode("ascii"))
        agent = self._agents.get(parts.netloc)
        if agent is None or parts.netloc in self.down:
            return fail(ConnectionRefusedError(f"{parts.netloc} is unreachable"))
        target = f"https://{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        headers = headers.copy() if headers is not None else Headers()
        headers.setRawHeaders(b"Host", [parts.netloc.encode("ascii")])
        d: Deferred[IResponse] = agent.request(method, target.encode("ascii"), headers,
                                               bodyProducer)
        return d

    def flush(self) -> None:
        for agent in self._agents.values():
            agent.flush()


def run(d: Any, agent: MemoryFederationAgent) -> Any:
    """Flush in-memory traffic until ``d`` fires (bounded), returning its result."""
    results: list[Any] = []
    d.addBoth(results.append)
    for _ in range(100):
        if results:
            break
        agent.flush()
    if not results:
        raise AssertionError("in-memory federation request never finished")
    result = results[0]
    from twisted.python.failure import Failure

    if isinstance(result, Failure):
        result.raiseException()
    return result
