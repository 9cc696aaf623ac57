#!/usr/bin/env python3
"""A loopback TCP forwarder that sends each connection's responses at most RATE bytes per
second (a token bucket of 64 KiB per connection), as CDNs and registries limit each
connection. Requests pass unthrottled.

usage: slow-link.py LISTEN_PORT UPSTREAM_HOST:PORT RATE_BYTES_PER_S
"""
import asyncio
import sys
import time

BURST = 64 << 10


async def pipe(reader, writer, rate=None):
    """Copies reader to writer; with a rate, at most that many bytes per second."""
    tokens, last = float(BURST), time.monotonic()
    try:
        while data := await reader.read(BURST):
            for i in range(0, len(data), 16 << 10):
                piece = data[i:i + (16 << 10)]
                while rate:
                    now = time.monotonic()
                    tokens, last = min(BURST, tokens + (now - last) * rate), now
                    if tokens >= len(piece):
                        tokens -= len(piece)
                        break
                    await asyncio.sleep((len(piece) - tokens) / rate)
                writer.write(piece)
                await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    port, upstream, rate = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    host, uport = upstream.rsplit(":", 1)

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection(host, int(uport))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw, rate))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
