#!/usr/bin/env python3
"""The MCP trigger of action.do (docs/architecture.md §7.6) driven by a client this project
did not write: the official Python SDK of the Model Context Protocol (`mcp` on PyPI,
pinned in tests/run.sh, installed in .tools/mcp-venv).

- over stdio: `actiondo mcp`, started by the SDK's stdio client;
- over streamable HTTP: `/mcp` of `actiondo serve`, with API keys of two scopes.

Each test class uses its own temporary store (ACTIONDO_STORE=sqlite:<tmp>) and stops the
processes it starts. Run by cli/tests/mcp.rs (`cargo test -p actiondo-cli --test mcp`),
which passes the binary as ACTIONDO_BIN; runnable alone:

    ACTIONDO_BIN=target/debug/actiondo .tools/mcp-venv/bin/python tests/mcp/test_mcp.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.error
import urllib.request
import uuid

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation

BIN = os.environ.get("ACTIONDO_BIN", "")
CLIENT = Implementation(name="actiondo-tests", version="1.0")
KEY_META = "do.action/idempotencyKey"
EXECUTION_META = "do.action/execution"


def actiondo(store: str, *args: str, cwd: str) -> str:
    """Run the CLI once; its stdout."""
    done = subprocess.run(
        [BIN, "--store", store, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise AssertionError(f"actiondo {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def meta(result) -> dict:
    """The result's `_meta` as a plain dict."""
    value = result.meta
    if value is None:
        return {}
    return value if isinstance(value, dict) else value.model_dump(by_alias=True)


def tool_json(tool) -> dict:
    return tool.model_dump(by_alias=True, exclude_none=True)


class Fixture:
    """A temporary folder and store."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="actiondo-mcp-")
        self.store = f"sqlite:{self.dir}/actiondo.db"
        # Local email goes to .actiondo/outbox under the working folder.
        self.env = {**os.environ, "ACTIONDO_STORE": self.store}

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Checks:
    """What both transports must show; `self.client()` is the transport's client."""

    fixture: Fixture

    async def asyncSetUp(self) -> None:
        # unittest runs the loop in debug mode, which reports every callback over 0.1 s.
        asyncio.get_running_loop().slow_callback_duration = 60

    def client(self, key: str | None = None) -> Client:
        raise NotImplementedError

    def catalog(self, key: str | None = None) -> list[dict]:
        raise NotImplementedError

    async def test_tools_are_the_catalog_with_its_schemas(self) -> None:
        async with self.client() as client:
            tools = {t.name: tool_json(t) for t in (await client.list_tools()).tools}
        catalog = {a["name"]: a for a in self.catalog()}
        self.assertEqual(sorted(tools), sorted(catalog))
        self.assertIn("create-user", tools)
        for name, action in catalog.items():
            tool = tools[name]
            self.assertEqual(tool["inputSchema"], action["inputSchema"], name)
            self.assertEqual(tool["outputSchema"], action["outputSchema"], name)
            self.assertTrue(tool["description"].startswith(action["description"]), name)
            self.assertIs(tool["annotations"]["idempotentHint"], True, name)
        # Declared by the actions' Effects, not by a list of names.
        self.assertIs(tools["send-email"]["annotations"]["openWorldHint"], True)
        self.assertIs(tools["process-payment"]["annotations"]["openWorldHint"], True)
        self.assertIs(tools["create-user"]["annotations"]["openWorldHint"], False)
        self.assertIs(tools["create-user"]["annotations"]["destructiveHint"], False)
        self.assertIs(tools["release-resources"]["annotations"]["destructiveHint"], True)
        self.assertIn(KEY_META, tools["process-payment"]["description"])
        self.assertIn("Requires an idempotency key", tools["process-payment"]["description"])

    async def test_a_call_replays_under_its_key_and_creates_one_user(self) -> None:
        key = f"signup-{uuid.uuid4()}"
        email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
        args = {"email": email, "name": "Ada Lovelace"}
        async with self.client() as client:
            first = await client.call_tool("create-user", args, meta={KEY_META: key})
            again = await client.call_tool("create-user", args, meta={KEY_META: key})
            other = await client.call_tool(
                "create-user", args, meta={KEY_META: f"other-{uuid.uuid4()}"}
            )
            page = await client.read_resource(f"actiondo://executions/create-user/{key}")
        self.assertFalse(first.is_error, first.content)
        self.assertRegex(first.structured_content["userId"], r".+")
        self.assertEqual(json.loads(first.content[0].text), first.structured_content)
        self.assertEqual(
            meta(first)[EXECUTION_META],
            {"action": "create-user", "key": key, "attempt": 1, "replayed": False},
        )
        # The replay: the identical structured result, said to be a replay.
        self.assertFalse(again.is_error, again.content)
        self.assertEqual(again.structured_content, first.structured_content)
        self.assertEqual(again.content[0].text, first.content[0].text)
        self.assertIs(meta(again)[EXECUTION_META]["replayed"], True)
        self.assertTrue(any("Replayed" in c.text for c in again.content[1:]), again.content)
        # One user: the same email under another key is the business refusal.
        self.assertTrue(other.is_error)
        self.assertEqual(other.structured_content["type"], "ActionDo.Rejected")
        # The execution resource: the record and its audit trail, source mcp.
        execution = json.loads(page.contents[0].text)
        self.assertEqual(execution["execution"]["status"], "COMPLETED")
        self.assertEqual(execution["execution"]["result"], first.structured_content)
        statuses = sorted(r["status"] for r in execution["audit"])
        self.assertEqual(statuses, ["completed", "replayed"])
        for record in execution["audit"]:
            self.assertEqual(record["source"], "mcp")
            self.assertEqual(record["caller"], self.expected_caller())

    async def test_a_schema_violation_is_an_error_result_with_the_field_errors(self) -> None:
        async with self.client() as client:
            result = await client.call_tool(
                "create-user", {"email": 42, "nickname": "x"}, meta={KEY_META: f"bad-{uuid.uuid4()}"}
            )
        self.assertTrue(result.is_error)
        error = result.structured_content
        self.assertEqual(error["type"], "ActionDo.Validation")
        self.assertIs(error["retryable"], False)
        self.assertIsInstance(error["message"], str)
        paths = {e["path"] for e in error["details"]["errors"]}
        self.assertIn("/email", paths)
        self.assertGreaterEqual(len(error["details"]["errors"]), 2, error)
        self.assertEqual(json.loads(result.content[0].text), error)

    async def test_a_key_reused_with_other_arguments_is_a_payload_mismatch(self) -> None:
        key = f"mismatch-{uuid.uuid4()}"
        async with self.client() as client:
            first = await client.call_tool(
                "create-user", {"email": f"m-{uuid.uuid4().hex[:8]}@example.com", "name": "M"},
                meta={KEY_META: key},
            )
            second = await client.call_tool(
                "create-user", {"email": f"n-{uuid.uuid4().hex[:8]}@example.com", "name": "N"},
                meta={KEY_META: key},
            )
        self.assertFalse(first.is_error, first.content)
        self.assertTrue(second.is_error)
        self.assertEqual(second.structured_content["type"], "ActionDo.PayloadMismatch")
        self.assertIs(second.structured_content["retryable"], False)

    async def test_the_audit_resource_names_the_mcp_caller(self) -> None:
        key = f"audit-{uuid.uuid4()}"
        async with self.client() as client:
            done = await client.call_tool(
                "create-user", {"email": f"a-{uuid.uuid4().hex[:8]}@example.com", "name": "A"},
                meta={KEY_META: key, "do.action/correlationId": f"conversation-{key}"},
            )
            page = await client.read_resource(f"actiondo://audit?type=create-user&key={key}")
            recent = await client.read_resource("actiondo://audit")
        self.assertFalse(done.is_error, done.content)
        records = json.loads(page.contents[0].text)["records"]
        self.assertEqual(len(records), 1)
        self.assertEqual(records[0]["status"], "completed")
        self.assertEqual(records[0]["source"], "mcp")
        self.assertEqual(records[0]["caller"], self.expected_caller())
        self.assertEqual(records[0]["correlationId"], f"conversation-{key}")
        newest = json.loads(recent.contents[0].text)["records"]
        self.assertIn(records[0]["seq"], [r["seq"] for r in newest])

    def expected_caller(self) -> str:
        raise NotImplementedError


class Stdio(Checks, unittest.IsolatedAsyncioTestCase):
    """`actiondo mcp` over stdio, every action in scope."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.fixture = Fixture()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.fixture.close()

    def client(self, key: str | None = None) -> Client:
        params = StdioServerParameters(
            command=BIN, args=["mcp"], env=self.fixture.env, cwd=self.fixture.dir
        )
        return Client(params, client_info=CLIENT)

    def catalog(self, key: str | None = None) -> list[dict]:
        out = actiondo(self.fixture.store, "actions", "--json", cwd=self.fixture.dir)
        return json.loads(out)["actions"]

    def expected_caller(self) -> str:
        return "mcp:actiondo-tests"

    async def test_a_required_key_is_said_in_the_error(self) -> None:
        async with self.client() as client:
            result = await client.call_tool(
                "process-payment", {"userId": "u-1", "amount": 100, "currency": "EUR"}
            )
        self.assertTrue(result.is_error)
        self.assertEqual(result.structured_content["type"], "ActionDo.Validation")
        self.assertEqual(result.structured_content["details"]["reason"], "key_required")
        self.assertIn(KEY_META, result.structured_content["message"])

    async def test_a_narrower_scope_offers_fewer_tools(self) -> None:
        params = StdioServerParameters(
            command=BIN, args=["mcp", "--scope", "create-*"], env=self.fixture.env,
            cwd=self.fixture.dir,
        )
        async with Client(params, client_info=CLIENT) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            refused = await client.call_tool("send-email", {"to": "x@example.com"})
        self.assertEqual(names, ["create-invoice", "create-or-update-contact", "create-user"])
        self.assertTrue(refused.is_error)
        self.assertEqual(refused.structured_content["type"], "ActionDo.Forbidden")


class Http(Checks, unittest.IsolatedAsyncioTestCase):
    """`/mcp` of `actiondo serve`, behind API keys: one for every action, one for
    create-user only."""

    server: subprocess.Popen
    url: str
    base: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.fixture = Fixture()
        store, cwd = cls.fixture.store, cls.fixture.dir
        cls.all_key = actiondo(store, "keys", "create", "--scope", "*", cwd=cwd).strip()
        cls.narrow_key = actiondo(store, "keys", "create", "--scope", "create-user", cwd=cwd).strip()
        cls.server = subprocess.Popen(
            [BIN, "serve", "--addr", "127.0.0.1:0"], cwd=cwd, env=cls.fixture.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        address = None
        assert cls.server.stderr is not None
        for line in cls.server.stderr:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                address = found.group(1)
                break
        if address is None:
            cls.server.kill()
            raise AssertionError("actiondo serve did not say where it listens")
        # Keep reading stderr so that the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in cls.server.stderr], daemon=True).start()
        cls.base = address
        cls.url = f"{address}/mcp"

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.terminate()
        try:
            cls.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cls.server.kill()
            cls.server.wait()
        cls.fixture.close()

    @contextlib.asynccontextmanager
    async def client(self, key: str | None = None, mode: str = "auto"):
        headers = {"Authorization": f"Bearer {key or self.all_key}"}
        async with httpx2.AsyncClient(headers=headers) as http:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(transport, client_info=CLIENT, mode=mode) as client:
                yield client

    def get(self, path: str, key: str | None = None) -> dict:
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Bearer {key or self.all_key}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def catalog(self, key: str | None = None) -> list[dict]:
        return self.get("/actions", key)["actions"]

    def expected_caller(self) -> str:
        key_id = self.all_key.split("_")[1]
        return f"apikey:{key_id} mcp:actiondo-tests"

    async def test_an_out_of_scope_tool_is_not_listed_and_refused(self) -> None:
        async with self.client(self.narrow_key) as client:
            tools = (await client.list_tools()).tools
            refused = await client.call_tool(
                "send-email", {"to": "grace@example.com", "subject": "Hi", "body": "Hello"},
                meta={KEY_META: "out-of-scope"},
            )
            with self.assertRaises(Exception) as unreadable:
                await client.read_resource("actiondo://executions/send-email/out-of-scope")
        self.assertEqual([t.name for t in tools], ["create-user"])
        self.assertEqual(tool_json(tools[0])["inputSchema"], self.catalog(self.narrow_key)[0]["inputSchema"])
        self.assertTrue(refused.is_error)
        self.assertEqual(refused.structured_content["type"], "ActionDo.Forbidden")
        self.assertNotIn("create-user", refused.structured_content["message"])
        self.assertIn("may not", str(unreadable.exception))
        # Nothing ran: no audit record of send-email under that key.
        self.assertEqual(self.get("/audit?type=send-email&key=out-of-scope")["records"], [])

    async def test_the_narrow_key_is_the_audit_caller(self) -> None:
        key = f"narrow-{uuid.uuid4()}"
        async with self.client(self.narrow_key) as client:
            done = await client.call_tool(
                "create-user", {"email": f"g-{uuid.uuid4().hex[:8]}@example.com", "name": "G"},
                meta={KEY_META: key},
            )
        self.assertFalse(done.is_error, done.content)
        records = self.get(f"/audit?type=create-user&key={key}")["records"]
        self.assertEqual([r["caller"] for r in records], [f"apikey:{self.narrow_key.split('_')[1]} mcp:actiondo-tests"])

    async def test_a_client_of_the_initialize_handshake_works_too(self) -> None:
        key = f"legacy-{uuid.uuid4()}"
        async with self.client(self.narrow_key, mode="legacy") as client:
            names = [t.name for t in (await client.list_tools()).tools]
            done = await client.call_tool(
                "create-user", {"email": f"l-{uuid.uuid4().hex[:8]}@example.com", "name": "L"},
                meta={KEY_META: key},
            )
        self.assertEqual(names, ["create-user"])
        self.assertFalse(done.is_error, done.content)
        records = self.get(f"/audit?type=create-user&key={key}")["records"]
        self.assertEqual(records[0]["caller"], f"apikey:{self.narrow_key.split('_')[1]} mcp:actiondo-tests")

    def test_no_key_or_a_wrong_key_is_401(self) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
        for auth in (None, "Bearer ado_0000000000000000_" + "0" * 64):
            headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
            if auth:
                headers["Authorization"] = auth
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            with self.assertRaises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            self.assertEqual(refused.exception.code, 401)
            self.assertEqual(refused.exception.headers["WWW-Authenticate"], "Bearer")
            self.assertEqual(json.load(refused.exception)["error"]["type"], "ActionDo.Unauthorized")


if __name__ == "__main__":
    if not BIN or not os.access(BIN, os.X_OK):
        sys.exit("set ACTIONDO_BIN to the actiondo binary (cargo build -p actiondo-cli)")
    unittest.main(verbosity=2)
