// The tutorial agent in Node's standard library alone: no npm packages, no
// SDK. It speaks AgentCore's agent contract directly:
//
//   - listen on 0.0.0.0:$PORT (8080 when PORT is unset, as AgentCore uses);
//   - GET /ping answers {"status": "Healthy", "time_of_last_update": <unix s>};
//   - POST /invocations gets the caller's payload as it was sent, and the
//     session's ID in the X-Amzn-Bedrock-AgentCore-Runtime-Session-Id header;
//     it answers JSON, or Server-Sent Events (text/event-stream) to stream.
//
// One process serves one session, so module-level state is the session's
// memory, and no other session ever sees it.
"use strict";
const http = require("node:http");
const crypto = require("node:crypto");

const USER_NAMES = { 1: "Maira", 2: "Mani", 3: "Mark", 4: "Ishan", 5: "Dhawal" };
const INSTANCE = crypto.randomBytes(8).toString("hex");
const STARTED = Math.floor(Date.now() / 1000);
const prompts = []; // this session's conversation
let last = null; // the last arithmetic result

const OPERATORS = { "+": "+", plus: "+", "-": "-", minus: "-", "*": "*", x: "*", "×": "*", times: "*", "/": "/", "÷": "/", over: "/" };

// calculate evaluates the arithmetic in a prompt, left to right with × and
// ÷ first; "that" is the previous result.
function calculate(prompt) {
  const tokens = [];
  for (const w of prompt.toLowerCase().match(/\d+(?:\.\d+)?|[a-z]+|[+\-*/×÷]/g) || []) {
    if (/^\d/.test(w)) tokens.push(Number(w));
    else if (w in OPERATORS) tokens.push(OPERATORS[w]);
    else if (w === "that" || w === "it") {
      if (last === null) throw new Error("no previous result");
      tokens.push(last);
    }
  }
  if (typeof tokens[0] === "string" && last !== null) tokens.unshift(last);
  if (tokens.length < 3 || typeof tokens[0] !== "number") return null;
  const terms = [tokens[0]];
  const ops = [];
  for (let i = 1; i + 1 < tokens.length; i += 2) {
    const [op, n] = [tokens[i], tokens[i + 1]];
    if (typeof op !== "string" || typeof n !== "number") return null;
    if (op === "*") terms[terms.length - 1] *= n;
    else if (op === "/") terms[terms.length - 1] /= n;
    else { terms.push(n); ops.push(op); }
  }
  return ops.reduce((v, op, i) => (op === "+" ? v + terms[i + 1] : v - terms[i + 1]), terms[0]);
}

function reply(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/ping") {
    return reply(res, 200, { status: "Healthy", time_of_last_update: STARTED });
  }
  if (req.method !== "POST" || req.url !== "/invocations") return reply(res, 404, { error: "not found" });
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let payload;
    try {
      payload = JSON.parse(Buffer.concat(chunks).toString() || "{}");
    } catch {
      return reply(res, 400, { error: "payload must be JSON" });
    }
    const name = USER_NAMES[payload.user_id] || "";
    const prompt = String(payload.prompt || "");
    prompts.push(prompt);
    const parts = [name ? `Hello ${name}!` : "Hello!"];
    if (/weather/i.test(prompt)) parts.push("It's sunny outside.");
    let result = null;
    try {
      result = calculate(prompt);
    } catch {
      parts.push("I have no previous result in this session to continue from.");
    }
    if (result !== null) {
      last = result;
      parts.push(`The result is ${result}.`);
    }
    const out = {
      session_id: req.headers["x-amzn-bedrock-agentcore-runtime-session-id"] || "",
      user_name: name,
      answer: parts.join(" "),
      result: result === null ? undefined : result,
      turn: prompts.length,
      remembered: [...prompts],
      payload,
      instance: INSTANCE,
    };
    if (!payload.stream) return reply(res, 200, out);
    res.writeHead(200, { "Content-Type": "text/event-stream" });
    for (const word of out.answer.match(/\S+\s*/g)) res.write(`data: ${JSON.stringify({ type: "delta", text: word })}\n\n`);
    res.end(`data: ${JSON.stringify({ type: "done", reply: out })}\n\n`);
  });
}).listen(Number(process.env.PORT || 8080), "0.0.0.0");
