// The AWS SDK for JavaScript v3 against an authenticating berth, for
// berth's compat tests.
//
// Reads a JSON list of cases on stdin, each {name, access_key, secret_key,
// arn, skew_seconds?, retries?, presign?}, and prints one JSON report: for
// an invocation, the outcome as the SDK threw it (error name, HTTP status,
// message) or the agent's answer; for presign, a WebSocket URL presigned
// with the SDK's SignatureV4.
import { createHash, createHmac, randomUUID } from 'node:crypto'
import { BedrockAgentCoreClient, InvokeAgentRuntimeCommand } from '@aws-sdk/client-bedrock-agentcore'
import { SignatureV4 } from '@smithy/signature-v4'

const endpoint = process.argv[2]

// Sha256 is the hash SignatureV4 wants, on node:crypto.
class Sha256 {
  constructor(secret) {
    this.h = secret ? createHmac('sha256', secret) : createHash('sha256')
  }
  update(data) {
    this.h.update(data)
  }
  async digest() {
    return new Uint8Array(this.h.digest())
  }
}

async function invoke(c) {
  const client = new BedrockAgentCoreClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: c.access_key, secretAccessKey: c.secret_key },
    maxAttempts: c.retries ? 3 : 1,
    systemClockOffset: (c.skew_seconds || 0) * 1000,
  })
  try {
    const out = await client.send(
      new InvokeAgentRuntimeCommand({
        agentRuntimeArn: c.arn,
        runtimeSessionId: randomUUID(),
        contentType: 'application/json',
        payload: new TextEncoder().encode(JSON.stringify({ op: 'echo', pad: 'x'.repeat(c.pad || 0) })),
      }),
    )
    const body = JSON.parse(await out.response.transformToString())
    return { ok: true, status: out.statusCode, payload_bytes: JSON.stringify(body.payload).length }
  } catch (e) {
    return { ok: false, code: e.name, status: e.$metadata?.httpStatusCode, message: e.message }
  }
}

async function presign(c) {
  const u = new URL(endpoint)
  const signer = new SignatureV4({
    credentials: { accessKeyId: c.access_key, secretAccessKey: c.secret_key },
    region: 'us-east-1',
    service: 'bedrock-agentcore',
    sha256: Sha256,
  })
  const signed = await signer.presign(
    {
      method: 'GET',
      protocol: u.protocol,
      hostname: u.hostname,
      port: Number(u.port),
      path: `/runtimes/${encodeURIComponent(c.arn)}/ws`,
      query: { qualifier: 'DEFAULT', 'X-Amzn-Bedrock-AgentCore-Runtime-Session-Id': c.session_id },
      headers: { host: u.host },
    },
    { expiresIn: 300 },
  )
  const q = new URLSearchParams(signed.query).toString()
  return { ok: true, url: `ws://${u.host}${signed.path}?${q}` }
}

let input = ''
for await (const chunk of process.stdin) input += chunk
const report = {}
for (const c of JSON.parse(input)) report[c.name] = c.presign ? await presign(c) : await invoke(c)
process.stdout.write(JSON.stringify(report))
