"""An independent MCP client for bm2's MCP server, built on the official MCP Python SDK.

Run by crates/bm2/tests/mcp.rs with the virtualenv it creates (target/test-tools/mcp-venv).

    client.py --transport stdio --bm2 PATH --home BM2_HOME [--read-only] session
    client.py --transport http --url URL --token TOKEN session
    client.py --transport http --url URL --token TOKEN http-guards

Scenarios:
  session      Connects, initializes, prints one JSON line {"ok": true, "server": {...},
               "capabilities": {...}}, then reads one JSON command a line on stdin and answers
               each with one JSON line on stdout ({"ok": true, ...} or {"ok": false, "error": ...}):
                 {"op": "list_tools"} / {"op": "list_resources"} / {"op": "list_templates"}
                 {"op": "call", "name": ..., "arguments": {...}}
                 {"op": "read", "uri": ...} / {"op": "subscribe", "uri": ...}
                 {"op": "wait_updated", "uri": ..., "timeout": seconds}
                 {"op": "stream_errors"}   what the transport could not parse (stdout noise)
                 {"op": "close"}
  http-guards  Raw HTTP requests (no SDK) against the streamable HTTP endpoint: missing token,
               wrong token, foreign Origin, foreign Host, then malformed bodies inside a valid
               session and a valid request after them. Prints one JSON object with what came back.
"""

import argparse
import json
import sys
import traceback
from contextlib import AsyncExitStack

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class Notifications:
    """What the server sent besides responses: resource updates and unparsable messages."""

    def __init__(self):
        self.updated = []
        self.stream_errors = []
        self.changed = anyio.Event()

    async def handler(self, message):
        if isinstance(message, Exception):
            self.stream_errors.append(repr(message))
        elif isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.ResourceUpdatedNotification
        ):
            self.updated.append(str(message.root.params.uri))
        else:
            return
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_updated(self, uri, timeout):
        with anyio.move_on_after(timeout):
            while uri not in self.updated:
                await self.changed.wait()
        return uri in self.updated


async def run_command(session, notes, cmd):
    op = cmd["op"]
    if op == "list_tools":
        return {"tools": [dump(t) for t in (await session.list_tools()).tools]}
    if op == "list_resources":
        return {"resources": [dump(r) for r in (await session.list_resources()).resources]}
    if op == "list_templates":
        result = await session.list_resource_templates()
        return {"templates": [dump(t) for t in result.resourceTemplates]}
    if op == "call":
        result = await session.call_tool(cmd["name"], cmd.get("arguments") or {})
        return {"result": dump(result)}
    if op == "read":
        return {"result": dump(await session.read_resource(cmd["uri"]))}
    if op == "subscribe":
        await session.subscribe_resource(cmd["uri"])
        return {}
    if op == "wait_updated":
        got = await notes.wait_updated(cmd["uri"], float(cmd.get("timeout", 20)))
        return {"received": got, "updated": notes.updated}
    if op == "stream_errors":
        return {"errors": notes.stream_errors}
    raise ValueError(f"unknown op {op!r}")


async def session_scenario(args):
    notes = Notifications()
    async with AsyncExitStack() as stack:
        if args.transport == "stdio":
            env = {"BM2_HOME": args.home, "NO_COLOR": "1", "BM2_SAMPLE_INTERVAL_MS": "200"}
            server_args = ["mcp"] + (["--read-only"] if args.read_only else [])
            params = StdioServerParameters(command=args.bm2, args=server_args, env=env)
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            http = create_mcp_http_client(headers={"Authorization": f"Bearer {args.token}"})
            await stack.enter_async_context(http)
            read, write, _ = await stack.enter_async_context(
                streamable_http_client(args.url, http_client=http)
            )
        session = await stack.enter_async_context(
            ClientSession(read, write, message_handler=notes.handler)
        )
        with anyio.fail_after(30):
            init = await session.initialize()
        emit(
            {
                "ok": True,
                "server": dump(init.serverInfo),
                "protocol": init.protocolVersion,
                "capabilities": dump(init.capabilities),
            }
        )
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            if cmd["op"] == "close":
                break
            try:
                with anyio.fail_after(60):
                    out = await run_command(session, notes, cmd)
                emit({"ok": True, **out})
            except Exception as e:  # an MCP error (JSON-RPC error) is an answer, not a crash
                error = {"message": str(e), "type": type(e).__name__}
                if hasattr(e, "error"):
                    error["code"] = getattr(e.error, "code", None)
                emit({"ok": False, "error": error})


def read_answer(response, want_id):
    """The JSON-RPC message answering `want_id` in a JSON or SSE response, else the raw body."""
    ctype = response.headers.get("content-type", "")
    if "text/event-stream" in ctype:
        seen = []
        for line in response.iter_lines():
            seen.append(line)
            if line.startswith("data:"):
                try:
                    msg = json.loads(line[5:].strip())
                except ValueError:
                    continue
                if isinstance(msg, dict) and (msg.get("id") == want_id or "error" in msg):
                    return msg, "\n".join(seen)
        return None, "\n".join(seen)
    body = response.read().decode("utf-8", "replace")
    try:
        return json.loads(body), body
    except ValueError:
        return None, body


def post(client, url, headers, body, want_id=None):
    with client.stream("POST", url, headers=headers, content=body) as r:
        msg, raw = read_answer(r, want_id)
        return {
            "status": r.status_code,
            "json": msg,
            "body": raw[:2000],
            "session": r.headers.get("mcp-session-id"),
        }


def http_guards_scenario(args):
    init = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-03-26",
                "capabilities": {},
                "clientInfo": {"name": "bm2-tests", "version": "0"},
            },
        }
    )
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    auth = {**base, "Authorization": f"Bearer {args.token}"}
    port = httpx.URL(args.url).port
    out = {}
    with httpx.Client(timeout=15) as c:
        out["no_token"] = post(c, args.url, base, init, 1)
        out["wrong_token"] = post(c, args.url, {**base, "Authorization": "Bearer nope"}, init, 1)
        out["evil_origin"] = post(c, args.url, {**auth, "Origin": "http://evil.example"}, init, 1)
        out["evil_host"] = post(c, args.url, {**auth, "Host": f"evil.example:{port}"}, init, 1)
        out["initialize"] = post(c, args.url, auth, init, 1)
        sid = out["initialize"]["session"]
        s = {**auth, "Mcp-Session-Id": sid} if sid else dict(auth)
        if out["initialize"]["json"] and "result" in out["initialize"]["json"]:
            version = out["initialize"]["json"]["result"].get("protocolVersion")
            if version:
                s["MCP-Protocol-Version"] = version
        initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        out["initialized"] = post(c, args.url, s, initialized)
        out["truncated"] = post(c, args.url, s, '{"jsonrpc":"2.0","id":2,"method":', 2)
        out["not_jsonrpc"] = post(c, args.url, s, '{"hello":"world"}', None)
        tools = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}})
        out["after"] = post(c, args.url, s, tools, 3)
        if sid:
            out["delete"] = c.delete(args.url, headers=s).status_code
    emit(out)


def describe(e):
    """The leaf exceptions of an exception group (anyio wraps task failures), one per line."""
    inner = getattr(e, "exceptions", None)
    if inner:
        return "; ".join(describe(x) for x in inner)
    return f"{type(e).__name__}: {e}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--transport", choices=["stdio", "http"], required=True)
    p.add_argument("--bm2")
    p.add_argument("--home")
    p.add_argument("--url")
    p.add_argument("--token")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("scenario", choices=["session", "http-guards"])
    args = p.parse_args()
    if args.transport == "stdio" and not (args.bm2 and args.home):
        p.error("stdio needs --bm2 and --home")
    if args.transport == "http" and not (args.url and args.token):
        p.error("http needs --url and --token")
    try:
        if args.scenario == "session":
            anyio.run(session_scenario, args)
        else:
            if args.transport != "http":
                p.error("http-guards needs --transport http")
            http_guards_scenario(args)
    except BaseException as e:  # noqa: BLE001 - report every failure as one clear line
        if isinstance(e, SystemExit):
            raise
        traceback.print_exc(file=sys.stderr)
        emit({"ok": False, "fatal": describe(e)})
        sys.exit(1)


if __name__ == "__main__":
    main()
