"""Transports: how a client's requests reach a daemon.

A transport sends one request and returns its reply and attachments. Attachments are what
carries hot segments: over a Unix socket they are fds (the client maps them read-only); the
in-process transport hands over read-only views directly. The client treats both alike.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence

from agentmem.errors import DaemonUnavailable, InvalidArgument, ProtocolError
from agentmem.protocol import fdpass, framing
from agentmem.protocol.fdpass import recv_some
from agentmem.protocol.messages import OUT_OF_RANGE

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from typing import Protocol
else:  # structural typing is for type checkers: at run time a plain base
    Protocol = object

Attachment = int | memoryview
"""An fd to map (socket transport) or a ready read-only view (in-process transport)."""


class Transport(Protocol):
    """Carries requests; one outstanding request at a time. Not thread-safe."""

    def request(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[dict[str, object], list[Attachment]]:
        """Send ``msg`` (with ``fds`` riding along) and return the reply and its attachments.

        The caller owns returned fds. Raises ``DaemonUnavailable`` if the peer is gone.
        """
        ...

    def close(self) -> None:
        """Release the connection. Idempotent."""
        ...


class UnixSocketTransport:
    """A blocking Unix stream socket to the daemon."""

    def __init__(self, path: str, *, timeout: float | None = None) -> None:
        """Connect to ``path``. ``timeout`` bounds the connect and every request (None: wait
        as long as the daemon takes; a blocking socket is ~10 us faster a round trip here than
        one with a timeout, which polls)."""
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(f"no daemon answers on {path}: {exc.strerror or exc}") from exc
        self._sock: socket.socket | None = sock
        self._inbox = fdpass.FdInbox()
        self._pending: list[fdpass.Received] = []
        self._encode = framing.Encoder().encode

    def request(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[dict[str, object], list[Attachment]]:
        sock = self._sock
        if sock is None:
            raise DaemonUnavailable("the connection is closed")
        pending = self._pending
        try:
            if fds:
                fdpass.send_frame(sock, self._encode(msg, fds=True), fds)
            elif "messages" in msg and (parts := framing.encode_gathered(msg, "messages")):
                fdpass.send_parts(sock, parts)
            else:
                sock.sendall(self._encode(msg))
            if not pending:
                inbox = self._inbox
                received = recv_some(sock, inbox)[0]
                while not received:
                    received = recv_some(sock, inbox)[0]
                if len(received) == 1:  # the usual: the reply, alone
                    frame, got = received[0]
                    return frame.body, list(got) if got else []
                pending.extend(received)
        except TimeoutError as exc:
            waited = sock.gettimeout()
            self.close()
            raise DaemonUnavailable(f"no reply from the daemon within {waited} s") from exc
        except (OSError, EOFError) as exc:
            self.close()
            raise DaemonUnavailable(f"the daemon connection broke: {exc}") from exc
        except ProtocolError:
            self.close()
            raise
        except OverflowError:  # raised by the encoder, before anything was sent
            raise InvalidArgument(OUT_OF_RANGE) from None
        item = pending.pop(0)
        return item.frame.body, list(item.fds)

    def settimeout(self, seconds: float | None) -> None:
        """Bound each later request to ``seconds`` (None: wait as long as the daemon takes)."""
        if self._sock is not None:
            self._sock.settimeout(seconds)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._inbox.close()
            for item in self._pending:
                for fd in item.fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._pending.clear()
            sock.close()
