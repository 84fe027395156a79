package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// Agents written for AgentCore find a workload access token in the
// WorkloadAccessToken header, which AgentCore mints for the caller's user
// (from a JWT's iss and sub, or a SigV4 caller's user ID) for the agent to
// exchange at AgentCore Identity. berth's is its own: an opaque token, the
// same for one runtime and one identity, that no one without berth's key
// can forge and that reveals nothing; AWS does not accept it.

const watPrefix = "berth-wat-v1."

func (a *Authenticator) workloadToken(runtimeARN, identity string) string {
	mac := hmac.New(sha256.New, a.wat)
	mac.Write([]byte(watPrefix + "\x00" + runtimeARN + "\x00" + identity))
	return watPrefix + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
