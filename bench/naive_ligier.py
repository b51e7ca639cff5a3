"""A deliberately naive asyncio ControlHost dispatcher: the baseline of bench_controlhost.py.

What a first attempt in Python looks like: asyncio streams, one ``readexactly`` for each
prefix and one for each payload, and fan-out by one ``writer.write`` per message per
subscriber. Protocol subset: ``_Subscri`` (replace, modes ignored: everybody is ``any``),
``_Always`` (start delivery), every other tag is data. To stay bounded like our ligier,
a message is dropped for a subscriber whose transport already buffers more than
``QUEUE_BYTES`` (our ligier's default ``--queue-bytes``).

Run: ``python bench/naive_ligier.py --port 5553 [--host 127.0.0.1]``; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct

PREFIX = struct.Struct(">8siI")
QUEUE_BYTES = 64 * 1024 * 1024


class NaiveDispatcher:
    def __init__(self) -> None:
        self.subscribers: dict[bytes, set[asyncio.StreamWriter]] = {}
        self.dropped = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tags: list[bytes] = []
        try:
            while True:
                prefix = await reader.readexactly(PREFIX.size)
                raw_tag, size, _reserved = PREFIX.unpack(prefix)
                payload = await reader.readexactly(size)
                tag = raw_tag.rstrip(b"\x00")
                if tag == b"_Subscri":
                    self._unsubscribe(writer, tags)
                    words = payload.replace(b"\x00", b" ").split()
                    tags = [word[:8] for word in words[1::2]]
                elif tag == b"_Always":
                    for name in tags:
                        self.subscribers.setdefault(name, set()).add(writer)
                else:
                    frame = prefix + payload
                    for subscriber in self.subscribers.get(tag, ()):
                        if subscriber.transport.get_write_buffer_size() > QUEUE_BYTES:
                            self.dropped += 1
                        else:
                            subscriber.write(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._unsubscribe(writer, tags)
            writer.close()

    def _unsubscribe(self, writer: asyncio.StreamWriter, tags: list[bytes]) -> None:
        for name in tags:
            self.subscribers.get(name, set()).discard(writer)


async def serve(host: str, port: int) -> None:
    dispatcher = NaiveDispatcher()
    server = await asyncio.start_server(dispatcher.handle, host, port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
