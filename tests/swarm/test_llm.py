"""The mock LLM replays each agent's replies in order, then says it is done."""

from __future__ import annotations

import json

from agentmem.swarm import agent, llm


def _replies() -> dict[int, list[bytes]]:
    return {
        0: [
            agent.compact({"message": {"role": "assistant", "content": f"a{k}"}, "results": []})
            for k in range(3)
        ],
        1: [agent.compact({"message": {"role": "assistant", "content": "b0"}, "results": []})],
    }


def test_answers_in_order_per_agent_then_done() -> None:
    server = llm.MockLLM(_replies(), check=True)
    with llm.serving(server) as port:
        http = agent.Http(port)
        try:
            body = agent.request_body("sys", "env", [], [{"role": "user", "content": "go"}])
            got = []
            for who in (0, 1, 0, 1, 0, 0):
                status, data = http.request("POST", f"/v1/agents/{who}/messages", [body], len(body))
                assert status == 200
                got.append(json.loads(data))
            status, data = http.request("GET", "/v1/agents/0/requests")
            seen = json.loads(data)
            status404, _ = http.request("POST", "/v1/agents/7/messages", [body], len(body))
        finally:
            http.close()
    contents = [g["message"]["content"] if "message" in g else "done" for g in got]
    assert contents == ["a0", "b0", "a1", "done", "a2", "done"]
    assert status == 200 and len(seen) == 4
    assert seen[0] == {
        "bytes": len(body),
        "sha256": seen[0]["sha256"],
        "system": 2,
        "tools": 0,
        "messages": 1,
        "roles": ["user"],
    }
    assert status404 == 404


def test_large_body_in_pieces_is_counted_not_kept() -> None:
    server = llm.MockLLM(_replies())
    with llm.serving(server) as port:
        http = agent.Http(port)
        try:
            pieces = [memoryview(b"x" * (3 << 20)), b"y" * 10, b"z" * 100]
            total = sum(len(p) for p in pieces)
            status, data = http.request("POST", "/v1/agents/1/messages", pieces, total)
            _, stats = http.request("GET", "/v1/stats")
        finally:
            http.close()
    assert status == 200 and json.loads(data)["message"]["content"] == "b0"
    assert json.loads(stats) == {"requests": 2, "bytes_received": total}  # the GET counts
    assert server.seen == {}
