"""Issue 15 items 5 and 9: what an API server sends is read within bounds, and a guild admin's API
server is reached only on a public address. The real MJClient against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.errors import AddressNotAllowed, TransientError
from bot.net.addresses import AddressPolicy
from bot.upstream.client import MJClient, UpstreamConfig
from bot.upstream.keys import Upstreams
from bot.upstream.simulator import SimulatedProxy
from tests.fakes.http import serve

TASK = {"id": "1", "action": "IMAGINE", "status": "IN_PROGRESS", "progress": "10%", "prompt": "a cat"}


class AnswerServer:
    """Answers GET /mj/task/1/fetch with whatever the test puts in `answer`."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.base = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.answer = self.plain

    async def plain(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(TASK)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path)
        return await self.answer(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve(app)
        self.base = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[AnswerServer]:
    answers = AnswerServer()
    await answers.start()
    yield answers
    await answers.stop()


def client_for(server: AnswerServer, *, timeout: float = 2.0, max_response_bytes: int = 64 * 1024) -> MJClient:
    config = UpstreamConfig(name="test", base_url=server.base, api_key="sk-test-key-1234", timeout=timeout)
    return MJClient(config, read_retries=0, max_response_bytes=max_response_bytes)


async def test_an_answer_over_the_byte_cap_is_refused(server: AnswerServer) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"id": "1", "status": "IN_PROGRESS", "prompt": "')
        for _ in range(64):  # 4 MiB of prompt: valid JSON, only too much of it
            await response.write(b"a" * 65536)
        await response.write(b'"}')
        return response

    server.answer = huge
    async with client_for(server) as client:
        with pytest.raises(TransientError) as caught:
            await client.fetch("1")
    assert "larger than" in caught.value.detail


async def test_an_answer_that_drips_in_hits_the_total_deadline(server: AnswerServer) -> None:
    body = json.dumps(TASK).encode()

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for byte in body:  # each byte well within the read timeout; the whole far past the deadline
            await response.write(bytes([byte]))
            await asyncio.sleep(0.1)
        return response

    server.answer = drip
    async with client_for(server, timeout=0.5) as client:
        with pytest.raises(TransientError) as caught:
            await client.fetch("1")
    assert "no answer within" in caught.value.detail


async def test_deeply_nested_json_is_a_bad_answer_not_a_recursion_error(server: AnswerServer) -> None:
    async def nested(request: web.Request) -> web.Response:
        return web.Response(body=b"[" * 20_000 + b"]" * 20_000, content_type="application/json")

    server.answer = nested
    async with client_for(server) as client:
        with pytest.raises(TransientError) as caught:
            await client.fetch("1")
    assert "not JSON" in caught.value.detail


async def test_a_compressed_answer_is_read_decoded_and_capped_after_decoding(server: AnswerServer) -> None:
    async def gzipped(request: web.Request) -> web.Response:
        response = web.json_response({**TASK, "prompt": "b" * 200_000})
        response.enable_compression(web.ContentCoding.gzip)
        return response

    server.answer = gzipped
    async with client_for(server, max_response_bytes=1024 * 1024) as client:
        task = await client.fetch("1")
    assert task is not None and task.prompt == "b" * 200_000
    async with client_for(server, max_response_bytes=100_000) as client:  # a few KB on the wire
        with pytest.raises(TransientError):
            await client.fetch("1")


async def test_a_guild_keys_server_that_resolves_to_the_bots_machine_is_refused_on_connect(
    server: AnswerServer,
) -> None:
    upstreams = Upstreams(AddressPolicy())
    upstreams.configure("key:1", UpstreamConfig(name="key:1", base_url=f"http://localhost:{server.port}", api_key="k"))
    try:
        with pytest.raises(AddressNotAllowed):
            await upstreams["key:1"].fetch("1")
    finally:
        await upstreams.aclose()
    assert server.seen == []


async def test_an_allowed_host_and_port_is_reached_and_the_same_host_on_another_port_is_not() -> None:
    async with SimulatedProxy(api_key="k") as allowed, SimulatedProxy(api_key="k") as other:
        upstreams = Upstreams(AddressPolicy(allowed_pairs=frozenset({f"localhost:{allowed.port}"})))
        upstreams.configure(
            "key:1", UpstreamConfig(name="key:1", base_url=f"http://localhost:{allowed.port}", api_key="k")
        )
        upstreams.configure(
            "key:2", UpstreamConfig(name="key:2", base_url=f"http://localhost:{other.port}", api_key="k")
        )
        try:
            await upstreams["key:1"].check()
            with pytest.raises(AddressNotAllowed):
                await upstreams["key:2"].check()
        finally:
            await upstreams.aclose()
        assert allowed.requests and not other.requests
