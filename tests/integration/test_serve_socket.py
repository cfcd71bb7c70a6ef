"""serve's API socket: connections accepted on it run without Nagle's algorithm (else each keep-alive response waits
out the client's delayed ACK, 44 ms a request here; BENCHMARKS.md "The page")."""

from __future__ import annotations

import asyncio
import socket

from video_ai.local.serve import bind_socket


def test_connections_accepted_on_the_api_socket_have_tcp_nodelay() -> None:
    sock = bind_socket("127.0.0.1", 0)

    async def accept_one() -> list[int]:
        seen: list[int] = []

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted: socket.socket = writer.get_extra_info("socket")
            seen.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=sock)
        host, port = sock.getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        await reader.read()  # until the server closes it
        writer.close()
        server.close()
        await server.wait_closed()
        return seen

    assert asyncio.run(accept_one()) == [1]
