// The client side of AgentCore's "runtime context and session management"
// tutorial, with the AWS SDK for JavaScript v3, pointed at berth.
//
// Nothing here knows about berth. The only change from talking to AWS is the
// endpoint, given one of the two ways the SDK supports:
//
//	export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=http://127.0.0.1:8787
//	node tutorial-client.mjs --arn arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/tutorial
//
//	node tutorial-client.mjs --endpoint-url http://127.0.0.1:8787 --arn ...
//
// The SDK signs with the usual AWS credentials: any values do against a berth
// with authentication off (AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x
// AWS_REGION=us-east-1); with it on, a key from `berth credentials create NAME`.
//
// Same conversation as tutorial_client.py: the weather, "How much is 2X5?"
// and a streamed "and that plus 34?" in one session, "and plus 10?" in a new
// one, then StopRuntimeSession twice, the second expecting
// ResourceNotFoundException. Progress goes to stderr; with --json, a report
// of every exchange goes to stdout.
import { randomUUID } from 'node:crypto'
import { parseArgs } from 'node:util'
import {
  BedrockAgentCoreClient,
  InvokeAgentRuntimeCommand,
  StopRuntimeSessionCommand,
  ResourceNotFoundException,
} from '@aws-sdk/client-bedrock-agentcore'

const { values: args } = parseArgs({
  options: {
    arn: { type: 'string' },
    'endpoint-url': { type: 'string' },
    region: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
})
if (!args.arn) {
  console.error('usage: node tutorial-client.mjs --arn ARN [--endpoint-url URL] [--region R] [--json]')
  process.exit(2)
}

const log = (...parts) => console.error(...parts)

const client = new BedrockAgentCoreClient({
  ...(args['endpoint-url'] ? { endpoint: args['endpoint-url'] } : {}),
  ...(args.region ? { region: args.region } : {}),
  maxAttempts: 1,
})

// readEvents reads a Server-Sent Events body line by line, keeping the
// JSON of every "data: " line.
async function readEvents(body) {
  const events = []
  let pending = ''
  const take = (line) => {
    if (line.startsWith('data: ')) events.push(JSON.parse(line.slice('data: '.length)))
  }
  for await (const chunk of body) {
    pending += Buffer.from(chunk).toString('utf8')
    let nl
    while ((nl = pending.indexOf('\n')) >= 0) {
      take(pending.slice(0, nl).replace(/\r$/, ''))
      pending = pending.slice(nl + 1)
    }
  }
  if (pending) take(pending)
  return events
}

async function invoke(sessionId, payload, accept) {
  const resp = await client.send(
    new InvokeAgentRuntimeCommand({
      agentRuntimeArn: args.arn,
      qualifier: 'DEFAULT',
      runtimeSessionId: sessionId,
      payload: JSON.stringify(payload),
      ...(accept ? { accept } : {}),
    }),
  )
  const exchange = {
    payload,
    status_code: resp.statusCode ?? resp.$metadata.httpStatusCode,
    content_type: resp.contentType,
    runtime_session_id: resp.runtimeSessionId,
  }
  if ((resp.contentType ?? '').includes('text/event-stream')) {
    exchange.events = await readEvents(resp.response)
    exchange.reply = [...exchange.events].reverse().find((e) => e && e.reply)?.reply ?? null
    log(`  [${exchange.events.length} events] ${exchange.events.map((e) => e.text ?? '').join('')}`)
  } else {
    exchange.reply = JSON.parse(await resp.response.transformToString())
    log(`  ${exchange.reply?.answer ?? JSON.stringify(exchange.reply)}`)
  }
  return exchange
}

// Note where requests really go, wherever the endpoint came from.
const sentTo = new Set()
client.middlewareStack.add(
  (next) => async (args) => {
    const { protocol, hostname, port } = args.request
    sentTo.add(`${protocol}//${hostname}${port ? ':' + port : ''}`)
    return next(args)
  },
  { step: 'finalizeRequest', name: 'noteEndpoint' },
)
const report = { client: 'aws-sdk-js-v3', steps: [] }
const first = randomUUID()
const second = randomUUID()
const conversation = [
  ['weather', first, { prompt: 'How is the weather outside?', user_id: '1' }],
  ['multiply', first, { prompt: 'How much is 2X5?', user_id: '1' }],
  ['add', first, { prompt: 'and that plus 34?', user_id: '1', stream: true }, 'text/event-stream, application/json'],
  ['new session', second, { prompt: 'and plus 10?', user_id: '1' }],
]
for (const [name, sessionId, payload, accept] of conversation) {
  log(`[${name}] session ${sessionId}: ${payload.prompt}`)
  const step = await invoke(sessionId, payload, accept)
  report.steps.push({ name, session: sessionId, ...step })
}

const stopInput = { agentRuntimeArn: args.arn, qualifier: 'DEFAULT', runtimeSessionId: first }
log(`[stop] session ${first}`)
const stop = await client.send(new StopRuntimeSessionCommand(stopInput))
report.stop = { status_code: stop.statusCode ?? stop.$metadata.httpStatusCode, runtime_session_id: stop.runtimeSessionId }
log(`[stop again] session ${first}`)
try {
  await client.send(new StopRuntimeSessionCommand(stopInput))
  report.second_stop = { error: null }
  log('  stopped again?! expected ResourceNotFoundException')
} catch (err) {
  if (!(err instanceof ResourceNotFoundException)) throw err
  report.second_stop = { error: err.name, status_code: err.$metadata?.httpStatusCode, message: err.message }
  log(`  ResourceNotFoundException: ${err.message}`)
}

report.sent_to = [...sentTo]
log(`requests went to ${report.sent_to.join(', ')}`)
if (args.json) console.log(JSON.stringify(report))
