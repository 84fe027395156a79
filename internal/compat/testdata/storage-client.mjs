// Session storage through the AWS SDK for JavaScript v3, for berth's
// compat tests: the same plan and report as storage_client.py.
//
// Usage: node storage-client.mjs ENDPOINT < plan.json
import {
  BedrockAgentCoreControlClient,
  CreateAgentRuntimeCommand,
  GetAgentRuntimeCommand,
} from '@aws-sdk/client-bedrock-agentcore-control'
import {
  BedrockAgentCoreClient,
  InvokeAgentRuntimeCommand,
  StopRuntimeSessionCommand,
} from '@aws-sdk/client-bedrock-agentcore'

const endpoint = process.argv[2]
const opts = { endpoint, region: 'us-east-1', maxAttempts: 1 }
const ctl = new BedrockAgentCoreControlClient(opts)
const data = new BedrockAgentCoreClient(opts)

async function step(arn, s) {
  try {
    if (s.stop) {
      const out = await data.send(
        new StopRuntimeSessionCommand({ agentRuntimeArn: arn, runtimeSessionId: s.session, qualifier: 'DEFAULT' }),
      )
      return { result: { runtimeSessionId: out.runtimeSessionId } }
    }
    const out = await data.send(
      new InvokeAgentRuntimeCommand({
        agentRuntimeArn: arn,
        runtimeSessionId: s.session,
        qualifier: 'DEFAULT',
        payload: new TextEncoder().encode(JSON.stringify(s.payload)),
      }),
    )
    return { result: JSON.parse(await out.response.transformToString()) }
  } catch (e) {
    return { error: e.name, status: e.$metadata?.httpStatusCode, message: e.message }
  }
}

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const plan = JSON.parse(Buffer.concat(chunks).toString())

const created = await ctl.send(
  new CreateAgentRuntimeCommand({
    agentRuntimeName: plan.name,
    agentRuntimeArtifact: {
      codeConfiguration: {
        code: { s3: { bucket: 'berth-local', prefix: plan.prefix } },
        runtime: 'PYTHON_3_12',
        entryPoint: plan.entryPoint,
      },
    },
    roleArn: 'arn:aws:iam::123456789012:role/AgentRuntimeRole',
    networkConfiguration: { networkMode: 'PUBLIC' },
    filesystemConfigurations: [{ sessionStorage: { mountPath: plan.mountPath } }],
  }),
)
const deadline = Date.now() + 60_000
let got
for (;;) {
  got = await ctl.send(new GetAgentRuntimeCommand({ agentRuntimeId: created.agentRuntimeId }))
  if (got.status !== 'CREATING' || Date.now() > deadline) break
  await new Promise((r) => setTimeout(r, 200))
}
const arn = created.agentRuntimeArn
const steps = {}
for (const s of plan.steps) steps[s.name] = await step(arn, s)
console.log(JSON.stringify({ arn, status: got.status, filesystemConfigurations: got.filesystemConfigurations, steps }))
