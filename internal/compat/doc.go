// Package compat holds berth's compatibility tests: code nobody on this
// project wrote, run against a real berth. Agents built with AWS's own
// bedrock-agentcore SDK (the npm package, examples/agentcore-ts) run
// unmodified in the linux sandbox, and the clients users already have
// (boto3 and the AWS SDK for JavaScript v3, examples/clients, next to the
// AWS SDK for Go v2) drive berth with nothing changed but the endpoint.
//
// The package has no non-test code. Its tests install what they need with
// npm into the user cache, keyed by the lock file's hash, so reruns are fast,
// and they skip with a clear message only where a prerequisite is missing
// (the linux sandbox, node and npm, python3 with boto3).
package compat
