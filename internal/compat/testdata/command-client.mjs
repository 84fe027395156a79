// InvokeAgentRuntimeCommand cases through the AWS SDK for JavaScript v3,
// for berth's compat tests: the same cases and report as command_client.py.
//
// Usage: node command-client.mjs ENDPOINT < cases.json
import { BedrockAgentCoreClient, InvokeAgentRuntimeCommandCommand } from '@aws-sdk/client-bedrock-agentcore'

const endpoint = process.argv[2]
const client = new BedrockAgentCoreClient({ endpoint, region: 'us-east-1', maxAttempts: 1 })

async function run(c) {
  const body = { command: c.command }
  if (c.timeout !== undefined) body.timeout = c.timeout
  const out = { events: [] }
  let streaming = false
  try {
    const resp = await client.send(
      new InvokeAgentRuntimeCommandCommand({ agentRuntimeArn: c.arn, runtimeSessionId: c.session, body }),
    )
    out.session = resp.runtimeSessionId
    out.content_type = resp.contentType
    streaming = true
    for await (const event of resp.stream) out.events.push(event)
  } catch (e) {
    if (streaming) {
      out.stream_error = e.name
    } else {
      out.error = e.name
      out.status = e.$metadata?.httpStatusCode
    }
  }
  return out
}

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const cases = JSON.parse(Buffer.concat(chunks).toString())
const report = {}
for (const c of cases) report[c.name] = await run(c)
console.log(JSON.stringify(report))
