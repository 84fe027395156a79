// A2A's own client (@a2a-js/sdk) talking to an A2A agent through berth. It
// is given the runtime's base URL (its invocation URL with a trailing
// slash) and a session ID; it reads the card there, then sends a message
// and streams a task, and prints a JSON report of what it saw.
//
//   node client.mjs <base URL> <session ID>
import { ClientFactory } from "@a2a-js/sdk/client";
import { Role } from "@a2a-js/sdk";
import { randomUUID } from "node:crypto";

const [base, session] = process.argv.slice(2);
const headers = { "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": session };
const report = {};
const client = await new ClientFactory().createFromUrl(base);
report.card = await client.getAgentCard?.().catch((e) => ({ error: String(e) }));
const message = (value) => ({
  message: { messageId: randomUUID(), role: Role.ROLE_USER, parts: [{ content: { $case: "text", value }, metadata: undefined, filename: "", mediaType: "text/plain" }],
    contextId: "", taskId: "", extensions: [], metadata: undefined, referenceTaskIds: [] },
  configuration: undefined, metadata: undefined, tenant: "",
});
const replyOf = (task) => task?.artifacts?.flatMap((a) => a.parts).map((p) => p.content?.value).join("");
try {
  const sent = await client.sendMessage(message("hello"), { serviceParameters: headers });
  report.send = { kind: sent?.payload?.$case ?? (sent?.status ? "task" : "message"), reply: replyOf(sent?.payload?.value ?? sent) };
} catch (e) {
  report.send = { error: String(e) };
}
try {
  report.stream = [];
  for await (const ev of client.sendMessageStream(message("stream me"), { serviceParameters: headers })) {
    const p = ev.payload ?? {};
    report.stream.push({ kind: p.$case, state: p.value?.status?.state, reply: p.value?.artifact ? p.value.artifact.parts.map((x) => x.content?.value).join("") : undefined });
  }
} catch (e) {
  report.streamError = String(e);
}
console.log(JSON.stringify(report));
