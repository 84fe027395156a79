// An AG-UI agent, its events typed by @ag-ui/core, served as AgentCore
// hosts AG-UI agents: RunAgentInput in, an SSE stream of AG-UI events out,
// at POST /invocations on port 8080, with GET /ping. It answers the last
// user message: "crash" dies mid-run; "hold" waits (for the file
// AGUI_GATE_DIR/release) before it finishes; anything else is echoed with
// the number of runs this process (under berth, this session) has served.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { EventType } from "@ag-ui/core";

const instance = randomUUID();
let runs = 0;

const server = createServer(async (req, res) => {
  if (req.method === "GET" && req.url === "/ping") {
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ status: "Healthy" }));
    return;
  }
  if (req.method !== "POST" || req.url !== "/invocations") {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const input = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
  const said = [...(input.messages ?? [])].reverse().find((m) => m.role === "user")?.content ?? "";
  res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
  const send = (event) => res.write(`data: ${JSON.stringify(event)}\n\n`);
  const { threadId, runId } = input;
  const messageId = randomUUID();
  send({ type: EventType.RUN_STARTED, threadId, runId });
  send({ type: EventType.TEXT_MESSAGE_START, messageId, role: "assistant" });
  if (said === "crash") {
    setTimeout(() => process.exit(3), 20);
    return;
  }
  if (said === "hold") {
    while (!existsSync(join(process.env.AGUI_GATE_DIR ?? "/nonexistent", "release"))) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  send({ type: EventType.TEXT_MESSAGE_CONTENT, messageId, delta: `echo: ${said} (#${++runs} in ${instance})` });
  send({ type: EventType.TEXT_MESSAGE_END, messageId });
  send({ type: EventType.RUN_FINISHED, threadId, runId });
  res.end();
});

const host = process.env.BERTH_AGENT_HOST || "0.0.0.0";
const port = Number(process.env.PORT || 8080);
server.listen(port, host, () => console.error(JSON.stringify({ msg: "listening", addr: `${host}:${port}` })));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
