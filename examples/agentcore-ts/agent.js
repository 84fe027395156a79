// An agent written with AWS's TypeScript SDK for AgentCore Runtime (the npm
// package `bedrock-agentcore`), exactly as one would deploy it to AgentCore:
// it listens on 0.0.0.0:8080, ignores PORT, and knows nothing about berth.
// berth's compatibility tests (internal/compat) host it unmodified.
//
// Plain JavaScript (ES modules) so it runs with `node agent.js` and no build
// step; the SDK's types describe the same API to TypeScript code.
//
// The payload's "action" picks what it does:
//
//	"whoami" (default)  report this process's state, the context and the headers
//	"remember"          also keep payload.note in module-level memory
//	"stream"            stream payload.count SSE events, payload.interval_ms apart
//	"busy"              register an async task for payload.ms, so /ping says HealthyBusy
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { BedrockAgentCoreApp } from 'bedrock-agentcore/runtime'

// Module-level state lives as long as the process. AgentCore (and berth) run
// one process per session, so this is per-session memory.
const instance = randomUUID()
const notes = []
let invocations = 0

function state(request, context) {
  invocations += 1
  return {
    instance,
    pid: process.pid,
    invocations,
    notes: [...notes],
    session_id: context.sessionId,
    request_id: context.requestId ?? null,
    // The SDK passes on only Authorization and X-Amzn-Bedrock-AgentCore-Runtime-Custom-* headers.
    headers: context.headers,
    port_env: process.env.PORT ?? null,
    ping_status: app.getCurrentPingStatus(),
    async_tasks: app.getAsyncTaskInfo().activeCount,
    payload: request,
  }
}

// events yields count SSE messages, interval_ms apart, each stamped with the
// time it was produced.
async function* events(count, intervalMs) {
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(intervalMs)
    yield { event: 'message', data: { index: i, sent_at_ms: Date.now(), instance } }
  }
  yield { event: 'message', data: { done: true, count } }
}

const app = new BedrockAgentCoreApp({
  invocationHandler: {
    process: async (request, context) => {
      const body = request && typeof request === 'object' ? request : {}
      switch (body.action ?? 'whoami') {
        case 'whoami':
          return state(body, context)
        case 'remember':
          notes.push(String(body.note ?? ''))
          return state(body, context)
        case 'stream':
          return events(Number(body.count ?? 5), Number(body.interval_ms ?? 200))
        case 'busy': {
          // Background work the caller does not wait for. While it runs,
          // /ping answers HealthyBusy and the runtime keeps the session.
          const ms = Number(body.ms ?? 1000)
          const task = app.addAsyncTask('background-job', { ms })
          sleep(ms).then(() => app.completeAsyncTask(task))
          return { task, ...state(body, context) }
        }
        default:
          throw new Error(`unknown action ${JSON.stringify(body.action)}`)
      }
    },
  },
  config: { logging: { options: { level: process.env.LOG_LEVEL ?? 'info' } } },
})

app.run()
