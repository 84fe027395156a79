// @ag-ui/client's HttpAgent running an AG-UI agent through berth. It is
// given the runtime's invocation URL, a session ID and the gate directory
// the agent's "hold" waits on, runs each case, and prints a JSON report of
// the events and errors it saw.
//
//   node client.mjs <invocation URL> <session ID> <gate dir>
import { HttpAgent } from "@ag-ui/client";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";

const [url, session, gate] = process.argv.slice(2);
const SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id";

async function run(text, sessionID, onEvent) {
  const agent = new HttpAgent({ url, headers: { [SESSION]: sessionID } });
  agent.messages = [{ id: randomUUID(), role: "user", content: text }];
  const events = [];
  try {
    await agent.runAgent({ runId: randomUUID() }, {
      onEvent: ({ event }) => {
        events.push({ type: event.type, code: event.code, delta: event.delta, message: event.message });
        onEvent?.(event);
      },
    });
    return { events };
  } catch (e) {
    return { events, error: String(e.message ?? e), status: e.status, payload: e.payload };
  }
}

const report = {};
report.first = await run("hello", session);
report.second = await run("again", session);
report.crash = await run("crash", `crash-${session}`);
report.invalid = await run("hello", "too-short");
// A run holds the session; a second run in it is refused while it does.
let started;
const holding = new Promise((resolve) => (started = resolve));
const held = run("hold", `busy-${session}`, (ev) => ev.type === "RUN_STARTED" && started());
await holding;
report.busy = await run("hello", `busy-${session}`);
writeFileSync(join(gate, "release"), "");
report.held = await held;
console.log(JSON.stringify(report));
