"""A listening port on this machine's loopback whose connections are relayed elsewhere: through an
SSH channel (``SshExecutor.forward``) or to another address of this machine (``LocalExecutor``)."""

from __future__ import annotations

import select
import socket
import threading
from typing import Callable


def relay(connect: Callable[[tuple], object], name: str) -> socket.socket:
    """Listen on 127.0.0.1 (a free port) and serve each connection in a thread: ``connect(peer)``
    opens the far side (anything with recv/sendall/close that ``select`` accepts). The returned
    socket is the listener; closing it stops the relay."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(128)

    def serve() -> None:
        while True:
            try:
                sock, peer = server.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small writes
            try:
                far = connect(peer)
            except Exception:  # noqa: BLE001 - the far side refused: this one connection fails
                sock.close()
                continue
            threading.Thread(target=pump, args=(sock, far), daemon=True).start()

    threading.Thread(target=serve, daemon=True, name=name).start()
    return server


def pump(sock: socket.socket, far) -> None:
    """Copy bytes both ways between a local socket and the far side until either side closes."""
    try:
        while True:
            readable, _, _ = select.select([sock, far], [], [], 30)
            if sock in readable:
                data = sock.recv(65536)
                if not data:
                    break
                far.sendall(data)
            if far in readable:
                data = far.recv(65536)
                if not data:
                    break
                sock.sendall(data)
    except OSError:
        pass
    finally:
        far.close()
        sock.close()
