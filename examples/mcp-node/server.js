// An MCP server built with the official TypeScript SDK
// (@modelcontextprotocol/sdk), served as AgentCore hosts MCP servers:
// streamable HTTP at POST /mcp on port 8000. Nothing in it knows about
// berth. It has the same tools as the Go example (examples/mcp): add,
// count, countdown (progress notifications, gated by MCP_GATE_DIR when
// set) and crash. MCP_STATELESS=1 serves statelessly; otherwise the server
// mints a session ID on initialize and keeps the session in memory.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

// This process's memory: under berth, one session's.
let calls = 0;
const instance = randomUUID();

async function gate(name) {
  const dir = process.env.MCP_GATE_DIR;
  if (!dir) return;
  while (!existsSync(join(dir, name))) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function newServer() {
  const server = new McpServer({ name: "berth-example-mcp-node", version: "1.0.0" });
  server.registerTool("add", {
    description: "Add two integers.",
    inputSchema: { a: z.number().int(), b: z.number().int() },
    outputSchema: { sum: z.number().int() },
  }, async ({ a, b }) => {
    const out = { sum: a + b };
    return { content: [{ type: "text", text: JSON.stringify(out) }], structuredContent: out };
  });
  server.registerTool("count", {
    description: "Count the calls this session made.",
    outputSchema: { count: z.number().int(), instance: z.string() },
  }, async () => {
    const out = { count: ++calls, instance };
    return { content: [{ type: "text", text: JSON.stringify(out) }], structuredContent: out };
  });
  const progress = async (extra, i, n) => {
    const token = extra._meta?.progressToken;
    if (token === undefined) return;
    await extra.sendNotification({
      method: "notifications/progress",
      params: { progressToken: token, progress: i, total: n, message: `step ${i} of ${n}` },
    });
  };
  server.registerTool("countdown", {
    description: "Report progress n times, then lift off.",
    inputSchema: { n: z.number().int() },
  }, async ({ n }, extra) => {
    for (let i = 1; i <= n; i++) {
      await progress(extra, i, n);
      await gate(String(i));
    }
    return { content: [{ type: "text", text: "liftoff" }] };
  });
  server.registerTool("crash", { description: "Start answering, then die." }, async (extra) => {
    await progress(extra, 1, 2);
    setTimeout(() => process.exit(3), 10);
    return new Promise(() => {});
  });
  return server;
}

const stateless = process.env.MCP_STATELESS === "1";
const sessions = new Map(); // session ID → transport (stateful only)

async function readJSON(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : undefined;
}

const http = createServer(async (req, res) => {
  if (new URL(req.url, "http://agent").pathname !== "/mcp") {
    res.writeHead(404).end();
    return;
  }
  try {
    const body = req.method === "POST" ? await readJSON(req) : undefined;
    if (stateless) {
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      const server = newServer();
      res.on("close", () => { transport.close(); server.close(); });
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }
    const id = req.headers["mcp-session-id"];
    let transport = id && sessions.get(id);
    if (!transport && !id && isInitializeRequest(body)) {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => sessions.set(sid, transport),
      });
      transport.onclose = () => sessions.delete(transport.sessionId);
      await newServer().connect(transport);
    }
    if (!transport) {
      res.writeHead(id ? 404 : 400, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: id ? "Session not found" : "No session" } }));
      return;
    }
    await transport.handleRequest(req, res, body);
  } catch (err) {
    if (!res.headersSent) res.writeHead(400).end(String(err));
  }
});

const host = process.env.BERTH_AGENT_HOST || "0.0.0.0";
const port = Number(process.env.PORT || 8000);
http.listen(port, host, () => console.error(JSON.stringify({ msg: "listening", addr: `${host}:${port}` })));
process.on("SIGTERM", () => http.close(() => process.exit(0)));
