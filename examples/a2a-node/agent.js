// An A2A agent built with the official JavaScript SDK (@a2a-js/sdk),
// served as AgentCore hosts A2A agents: JSON-RPC 2.0 at POST / on port
// 9000, its card at /.well-known/agent-card.json, and GET /ping. The card's
// URL is AGENTCORE_RUNTIME_URL, which berth (like AgentCore) sets to the
// runtime's public invocation URL, so clients that read the card call back
// through berth. It answers each message with its text and how many
// messages this process (under berth, this session) has seen; streamed, it
// reports the task's progress first.
import { randomUUID } from "node:crypto";
import express from "express";
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore } from "@a2a-js/sdk/server";
import { agentCardHandler, jsonRpcHandler, UserBuilder } from "@a2a-js/sdk/server/express";
import { TaskState, Role } from "@a2a-js/sdk";

const instance = randomUUID();
let seen = 0;

const url = process.env.AGENTCORE_RUNTIME_URL || "http://localhost:9000/";
const card = {
  name: "berth echo agent",
  description: "Echoes each message and counts the messages of its session.",
  supportedInterfaces: [{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion: "1.0" }],
  provider: undefined,
  version: "1.0.0",
  capabilities: { streaming: true, pushNotifications: false, extensions: [] },
  securitySchemes: {},
  securityRequirements: [],
  defaultInputModes: ["text/plain"],
  defaultOutputModes: ["text/plain"],
  skills: [{ id: "echo", name: "echo", description: "Echo a message.", tags: ["echo"], examples: ["hello"],
    inputModes: ["text/plain"], outputModes: ["text/plain"], securityRequirements: [] }],
  signatures: [],
};

const text = (value) => ({ content: { $case: "text", value }, metadata: undefined, filename: "", mediaType: "text/plain" });

const executor = {
  cancelTask: async () => {},
  async execute(ctx, bus) {
    const { taskId, contextId, userMessage } = ctx;
    const said = userMessage.parts.find((p) => p.content?.$case === "text")?.content.value ?? "";
    const reply = `echo: ${said} (#${++seen} in ${instance})`;
    const status = (state) => ({ state, timestamp: new Date().toISOString(), message: undefined });
    if (!ctx.task) {
      bus.publish(AgentEvent.task({ id: taskId, contextId, status: status(TaskState.TASK_STATE_SUBMITTED), artifacts: [],
        history: [userMessage], metadata: undefined }));
    }
    bus.publish(AgentEvent.statusUpdate({ taskId, contextId, status: status(TaskState.TASK_STATE_WORKING), metadata: undefined }));
    bus.publish(AgentEvent.artifactUpdate({ taskId, contextId, append: false, lastChunk: true, metadata: undefined,
      artifact: { artifactId: randomUUID(), name: "reply", description: "", parts: [text(reply)], metadata: undefined, extensions: [] } }));
    bus.publish(AgentEvent.statusUpdate({ taskId, contextId, status: status(TaskState.TASK_STATE_COMPLETED), metadata: undefined }));
    bus.finished();
  },
};

const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), executor);
const app = express();
app.get("/ping", (_req, res) => res.json({ status: "Healthy" }));
app.use("/.well-known/agent-card.json", agentCardHandler({ agentCardProvider: async () => card }));
app.use("/", jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));

const host = process.env.BERTH_AGENT_HOST || "0.0.0.0";
const port = Number(process.env.PORT || 9000);
const server = app.listen(port, host, () => console.error(JSON.stringify({ msg: "listening", addr: `${host}:${port}`, url })));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
