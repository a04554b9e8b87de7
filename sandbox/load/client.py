"""One HTTP/1.1 client connection for the load workers: write a request, read one response.

Small on purpose: the request bytes are prepared once, the response is parsed by httptools and
its body counted, not kept. Framing follows RFC 9112: content-length, chunked, or (neither) the
body ends when the server closes. Only GET is sent, so the special cases are 1xx and 204/304.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools


class ProtocolError(Exception):
    """The server's answer was not HTTP/1.x or the connection ended mid-answer."""


@dataclass(frozen=True)
class Answer:
    status: int
    header_bytes: int
    body_bytes: int
    keep_alive: bool


class _Parse:
    """httptools callbacks: the status, sizes, and whether the message is complete."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.reset()

    def reset(self) -> None:
        self.status = 0
        self.header_bytes = 0
        self.body_bytes = 0
        self.complete = False
        self.headers_done = False
        self.until_close = False
        self.has_length = False
        self.chunked = False
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        lowered = name.lower()
        if lowered == b"content-length":
            self.has_length = True
        elif lowered == b"transfer-encoding":
            self.chunked = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue: the real answer follows
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message ends
        self.until_close = not self.has_length and not self.chunked and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.status:  # not the end of a 1xx
            self.complete = True
        else:
            self.header_bytes = 0
            self.has_length = self.chunked = False


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> Answer:
        """Send `request`, read its answer; on ProtocolError or OSError the connection is unusable."""
        self.writer.write(request)
        parse = _Parse()
        while not parse.complete:
            data = await self.reader.read(65536)
            if not data:
                self.closed = True
                if parse.headers_done and parse.until_close:
                    break  # a close-delimited body ends here
                raise ProtocolError("connection closed before the answer ended")
            try:
                parse.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                raise ProtocolError("unexpected upgrade") from None
            except httptools.HttpParserError as exc:
                raise ProtocolError(f"bad answer: {exc}") from None
        keep_alive = parse.complete and not parse.until_close and parse.keep_alive
        return Answer(parse.status, parse.header_bytes, parse.body_bytes, keep_alive and not self.closed)

    def close(self) -> None:
        self.closed = True
        self.writer.close()
