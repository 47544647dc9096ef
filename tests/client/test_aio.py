"""The asyncio client, against a real daemon and in-process; many tasks on one connection."""

from __future__ import annotations

import asyncio
import mmap
import pathlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence

import pytest

import agentmem
from agentmem import aio
from agentmem.client.aio import AsyncClient
from agentmem.daemon.inprocess import AsyncInProcessTransport
from agentmem.daemon.service import Service
from agentmem.errors import InvalidArgument, ProtocolError, UnknownHandle
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess
from tests.conftest import message, text

Connect = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture(params=["inprocess", "socket"])
def aconnect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    if request.param == "socket":
        d: DaemonProcess = request.getfixturevalue("daemon")

        async def factory(name: str, open: Sequence[str] = ()) -> AsyncClient:
            return await aio.connect(d.socket, name=name, open=open)

        yield factory
    else:
        service = Service()

        async def factory(name: str, open: Sequence[str] = ()) -> AsyncClient:
            client = AsyncClient(AsyncInProcessTransport(service))
            await client.hello(name, open=open)
            return client

        yield factory
        service.close_all()


def test_many_tasks_share_one_connection(aconnect: Connect) -> None:
    async def main() -> None:
        client = await aconnect("async-a")
        prompt = text(1, 300_000)

        async def agent(i: int) -> bytes:
            h = await client.alloc_smu("system_prompt", prompt)
            conv = await client.alloc_smu("conversation", [])
            for j in range(5):
                await client.append(conv, message(i * 10 + j))
            msgs = await client.messages(conv)
            assert msgs == [message(i * 10 + j) for j in range(5)]
            return bytes(await client.read(h))

        results = await asyncio.gather(*(agent(i) for i in range(20)))
        assert all(r == prompt for r in results)
        s = await client.get_stats()
        assert isinstance(s, StoreStats) and s.unique_bytes < 2 * len(prompt) + 200_000
        with pytest.raises(UnknownHandle):
            await client.read(999_999)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="out of range"):  # past 64 bits, either transport
            await client.read(2**70)  # type: ignore[arg-type]
        kept = await client.alloc_smu("blob", b"the connection goes on")
        assert bytes(await client.read(kept)) == b"the connection goes on"
        await client.close()

    asyncio.run(main())


def test_share_between_async_agents(aconnect: Connect) -> None:
    async def main() -> None:
        a = await aconnect("async-share-a")
        b = await aconnect("async-share-b")
        h = await a.alloc_smu("tool_def", text(2, 40_000))
        hb = await a.share_content(h, b.name)
        assert bytes(await b.read(hb)) == text(2, 40_000)
        await a.close()
        await b.close()

    asyncio.run(main())


def test_published_content_comes_with_the_handshake(aconnect: Connect) -> None:
    async def main() -> None:
        publisher = await aconnect("async-publisher")
        prompt = text(3, 1 << 20)
        await publisher.publish(await publisher.alloc_smu("system_prompt", prompt), "a/prompt")
        with pytest.raises(InvalidArgument, match=r"open=\['a/prompt'\]"):
            await aconnect("async-not-opener", open="a/prompt")
        agent = await aconnect("async-opener", open=["a/prompt"])
        h = agent.opened["a/prompt"]
        assert agent._prefetched.keys() == {h}  # the content came with the reply
        views = await agent.views(h)
        assert b"".join(views) == prompt and not agent._prefetched
        assert bytes(await agent.read(await agent.open("a/prompt"))) == prompt
        await publisher.unpublish("a/prompt")
        with pytest.raises(UnknownHandle):
            await agent.open("a/prompt")
        await agent.close()
        await publisher.close()

    asyncio.run(main())


def test_message_views_of_a_long_conversation(aconnect: Connect) -> None:
    async def main() -> None:
        client = await aconnect("async-views")
        raws = [message(500 + i) for i in range(120)]  # ~200 KB: past the 16 KiB of copies
        conv = await client.alloc_smu("conversation", [])
        await client.extend(conv, raws)
        views = await client.message_views(conv)
        assert [bytes(v) for v in views] == raws == await client.messages(conv)
        assert isinstance(views[-1].obj, mmap.mmap)  # a slice of the conversation's segment
        assert [bytes(v) for v in await client.message_views(conv, -2)] == raws[-2:]
        streamed = client.iter_message_views(conv, 100)
        first = await streamed.__anext__()
        await client.extend(conv, [b'{"later":1}'])  # between two views; not in the range
        assert [bytes(first), *[bytes(v) async for v in streamed]] == raws[100:]
        await client.close()

    asyncio.run(main())


def test_a_peer_that_is_not_agentmem_is_a_protocol_error_as_for_the_sync_client(
    tmp_path: pathlib.Path,
) -> None:
    """Something other than an agentmem daemon answers: both clients say the protocol was
    broken (what ``agentmem stats`` reports as 'no agentmem daemon of this version')."""
    path = str(tmp_path / "other.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()

    def serve(connections: int) -> None:
        for _ in range(connections):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)  # the hello
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                while conn.recv(65536):  # until the client hangs up
                    pass

    server = threading.Thread(target=serve, args=(2,))
    server.start()
    try:
        with pytest.raises(ProtocolError, match="bad frame magic"):
            asyncio.run(aio.connect(path))
        with pytest.raises(ProtocolError, match="bad frame magic"):
            agentmem.connect(path)
    finally:
        server.join(10)
        listener.close()
    assert not server.is_alive()
