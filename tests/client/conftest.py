"""Every client test runs against both transports: in-process, and a real daemon on a socket."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from agentmem.client import Client, connect
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.service import Service
from agentmem.testing import DaemonProcess

ClientFactory = Callable[..., Client]

_names = itertools.count()


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d


@pytest.fixture(params=["inprocess", "socket"])
def connect_agent(request: pytest.FixtureRequest) -> Iterator[ClientFactory]:
    """``connect_agent(name=None, **kw)`` -> a connected client on this test's transport."""
    clients: list[Client] = []
    if request.param == "inprocess":
        service = Service()

        def factory(name: str | None = None, **kw: object) -> Client:
            c = Client(InProcessTransport(service), name=name or f"agent-{next(_names)}", **kw)  # type: ignore[arg-type]
            clients.append(c)
            return c
    else:
        d: DaemonProcess = request.getfixturevalue("daemon")

        def factory(name: str | None = None, **kw: object) -> Client:
            c = connect(d.socket, name=name or f"agent-{next(_names)}", **kw)  # type: ignore[arg-type]
            clients.append(c)
            return c

    yield factory
    for c in clients:
        c.close()
    if request.param == "inprocess":
        service.close_all()
