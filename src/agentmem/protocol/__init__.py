"""The wire layer between agents and the daemon; docs/protocol.md specifies it.

- :mod:`~agentmem.protocol.framing`: frame header + msgpack body, sans-IO (``encode``/``feed``);
- :mod:`~agentmem.protocol.messages`: the request/reply schema, hello, typed field access;
- :mod:`~agentmem.protocol.fdpass`: the only socket code, sending frames with ``SCM_RIGHTS``
  and matching received fds to frames, plus ``SO_PEERCRED``.

Sits above the store in the layer order and must never import it: the client uses this package
without the store.
"""

from __future__ import annotations

from agentmem.protocol.fdpass import (
    MAX_FDS_PER_FRAME,
    FdInbox,
    Received,
    peer_credentials,
    recv_frames,
    send_frame,
)
from agentmem.protocol.framing import (
    FLAG_FDS,
    FRAME_VERSION,
    MAX_FRAME_BYTES,
    Frame,
    FrameDecoder,
    encode,
)
from agentmem.protocol.messages import (
    OPS,
    PROTOCOL_VERSION,
    check_hello,
    hello,
    optional,
    parse_request,
    raise_for_reply,
    reply_error,
    reply_ok,
    request,
    require,
)

__all__ = [
    "FLAG_FDS",
    "FRAME_VERSION",
    "MAX_FDS_PER_FRAME",
    "MAX_FRAME_BYTES",
    "OPS",
    "PROTOCOL_VERSION",
    "FdInbox",
    "Frame",
    "FrameDecoder",
    "Received",
    "check_hello",
    "encode",
    "hello",
    "optional",
    "parse_request",
    "peer_credentials",
    "raise_for_reply",
    "recv_frames",
    "reply_error",
    "reply_ok",
    "request",
    "require",
    "send_frame",
]
