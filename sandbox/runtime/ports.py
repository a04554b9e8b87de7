"""Free loopback ports for every listener of a local mesh, all distinct.

Each port comes from the kernel (bind to port 0), and the probe sockets stay open until the whole
plan has its ports, so no two listeners get the same number. A port could still be taken by
someone else between the allocation and the process binding it; the process then fails to start
and `up` names it (a rare race, and the next `up` allocates afresh).
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from types import TracebackType


class PortAllocator:
    def __init__(self, host: str = "127.0.0.1", avoid: Collection[int] = ()) -> None:
        self.host = host
        self.avoid = set(avoid)
        self._held: list[socket.socket] = []
        self.allocated: list[int] = []

    def __call__(self) -> int:
        for _ in range(64):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((self.host, 0))
            self._held.append(sock)
            port = int(sock.getsockname()[1])
            if port not in self.avoid:
                self.avoid.add(port)
                self.allocated.append(port)
                return port
        raise OSError("no free port found on the loopback interface")

    def release(self) -> None:
        for sock in self._held:
            sock.close()
        self._held.clear()

    def __enter__(self) -> PortAllocator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
