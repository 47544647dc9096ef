"""In-process clients get what the daemon's loop would give them: maintenance between calls
(idle content goes warm without a daemon) and calls serialised with it and with each other."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from agentmem.client import Client
from agentmem.client.aio import AsyncClient
from agentmem.config import Config
from agentmem.daemon.inprocess import (
    AsyncInProcessTransport,
    InProcessTransport,
    runner_of,
    shared_service,
)
from agentmem.daemon.service import Service
from agentmem.stats import StoreStats
from tests.conftest import text
from tests.daemon.conftest import wait_until


def _warm_chunks(client: Client) -> int:
    stats = client.get_stats()
    assert isinstance(stats, StoreStats)
    return stats.warm.chunks


def test_an_idle_agents_conversation_goes_warm_with_no_daemon() -> None:
    service = Service(Config(idle_agent_warm_seconds=1))
    with Client(InProcessTransport(service, maintain=True), name="resting") as client:
        chat = client.alloc_smu("conversation", [text(i, 2000) for i in range(20)])
        client.set_state("idle")
        # Nothing calls the service from here on: only the maintenance thread can demote.
        wait_until(lambda: _warm_chunks(client) > 0, "the idle conversation is warm")
        assert [bytes(m) for m in client.messages(chat)] == [text(i, 2000) for i in range(20)]
        runner = runner_of(service)
        assert runner is not None and runner.ticks >= 1
        assert service.maintenance_cpu_seconds > 0
    service.close_all()


def test_the_maintenance_thread_runs_while_clients_are_open_and_only_then() -> None:
    service = Service(Config())
    first = Client(InProcessTransport(service, maintain=True), name="first")
    second = Client(InProcessTransport(service), name="second")
    names = {t.name for t in threading.enumerate()}
    assert "agentmem-maintenance" in names
    first.close()
    assert runner_of(service) is not None  # the second client still holds it
    second.close()
    assert runner_of(service) is None
    assert "agentmem-maintenance" not in {t.name for t in threading.enumerate()}
    service.close_all()


def test_a_service_passed_in_is_maintained_only_when_asked() -> None:
    service = Service(Config())
    with Client(InProcessTransport(service), name="driven"):
        assert "agentmem-maintenance" not in {t.name for t in threading.enumerate()}
    service.close_all()


def test_connect_inprocess_maintains_the_process_wide_service() -> None:
    async def agent() -> bool:
        client = AsyncClient(AsyncInProcessTransport())
        await client.hello("asyncio-agent")
        runner = runner_of(shared_service())
        running = runner is not None and "agentmem-maintenance" in {
            t.name for t in threading.enumerate()
        }
        await client.close()
        return running

    assert asyncio.run(agent())


def test_clients_in_threads_share_one_service_safely() -> None:
    service = Service(Config(segment_bytes=256 << 10))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with Client(InProcessTransport(service, maintain=True), name=f"t{i}") as c:
                chat = c.alloc_smu("conversation", [])
                for j in range(300):
                    h = c.alloc_smu("tool_result", text(j, 700))
                    assert bytes(c.read(h)) == text(j, 700)
                    c.append(chat, text(j, 300))  # the same messages in every thread
                    if j % 3:
                        c.release(h)
                assert len(c.messages(chat)) == 300
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch every few bytecodes: races show, if any
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    for domain in service.domains.values():
        report = domain.store.check()
        assert report.ok, report
    service.close_all()


def test_a_forked_child_keeps_using_its_in_process_clients() -> None:
    service = Service(Config())
    with Client(InProcessTransport(service, maintain=True), name="parent") as client:
        held = client.alloc_smu("tool_result", text(7, 3000))
        pid = os.fork()
        if pid == 0:  # the child: its own lock and maintenance thread, the parent's data
            try:
                ok = bytes(client.read(held)) == text(7, 3000)
                h = client.alloc_smu("tool_result", text(8, 3000))
                ok = ok and bytes(client.read(h)) == text(8, 3000)
                ok = ok and "agentmem-maintenance" in {t.name for t in threading.enumerate()}
            except BaseException:
                ok = False
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert bytes(client.read(held)) == text(7, 3000)
    service.close_all()
