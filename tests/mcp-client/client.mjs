// A real MCP client for Quilt's system tests: the official TypeScript SDK
// (@modelcontextprotocol/sdk), run by Node.js. It connects to a board
// either through `quilt mcp` (stdio: the SDK launches the proxy) or
// straight to the board's Streamable HTTP endpoint with a bearer token,
// pinning the board's key as `quilt` does (SHA-256 of the certificate's
// SubjectPublicKeyInfo). It lists the tools, makes the calls it is given,
// and prints what it saw as one JSON object on stdout; the Rust test
// asserts on that.
//
//   node client.mjs stdio QUILT URL KEY PIN CALLS_JSON
//     (URL `serial:PATH`: `quilt mcp --serial PATH`, a board's serial line)
//   node client.mjs http URL TOKEN PIN CALLS_JSON
//   node client.mjs config CONFIG_JSON NAME CALLS_JSON
//     (launches the stdio server mcpServers[NAME] of an MCP client's
//     configuration, e.g. the one docs/gateway.md shows)
//
// CALLS_JSON: [{"name": MCP tool name, "arguments": {...}}, ...]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";
import { Agent, buildConnector, fetch as undiciFetch } from "undici";
import { createHash } from "node:crypto";

function pinnedFetch(pin) {
  // No TLS session cache: a resumed session shows no certificate, and a
  // session from a refused handshake must not skip the check next time.
  const base = buildConnector({ rejectUnauthorized: false, maxCachedSessions: 0 });
  const agent = new Agent({
    connect(opts, cb) {
      base(opts, (err, socket) => {
        if (err) return cb(err);
        const cert = socket.getPeerX509Certificate();
        if (!cert) {
          socket.destroy();
          return cb(new Error("the board showed no certificate"));
        }
        const spki = cert.publicKey.export({ type: "spki", format: "der" });
        const seen = "SHA256:" + createHash("sha256").update(spki).digest("base64");
        if (seen !== pin) {
          socket.destroy();
          return cb(new Error(`the board's key is ${seen}, not the pinned ${pin}`));
        }
        cb(null, socket);
      });
    },
  });
  return (url, init) => undiciFetch(url, { ...init, dispatcher: agent });
}

const [mode, ...args] = process.argv.slice(2);
let transport;
let calls;
if (mode === "stdio") {
  const [quilt, url, key, pin, callsJson] = args;
  calls = JSON.parse(callsJson);
  transport = new StdioClientTransport({
    command: quilt,
    args: [
      "mcp",
      ...(url.startsWith("serial:") ? ["--serial", url.slice("serial:".length)] : ["--board", url]),
      "--key", key, "--board-key", pin,
    ],
    stderr: "inherit",
  });
} else if (mode === "http") {
  const [url, token, pin, callsJson] = args;
  calls = JSON.parse(callsJson);
  transport = new StreamableHTTPClientTransport(new URL(url + "/mcp"), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
    fetch: pinnedFetch(pin),
  });
} else if (mode === "config") {
  // An MCP client's configuration as clients keep it (Claude Desktop's
  // claude_desktop_config.json): mcpServers[NAME] launched as it says,
  // with the SDK's default environment, as such a client does.
  const [configJson, name, callsJson] = args;
  const server = JSON.parse(configJson).mcpServers?.[name];
  if (!server) {
    console.error(`the configuration has no mcpServers.${name}`);
    process.exit(2);
  }
  calls = JSON.parse(callsJson);
  transport = new StdioClientTransport({
    command: server.command,
    args: server.args ?? [],
    env: server.env,
    stderr: "inherit",
  });
} else {
  console.error(
    "usage: client.mjs stdio QUILT URL KEY PIN CALLS | http URL TOKEN PIN CALLS | config CONFIG_JSON NAME CALLS",
  );
  process.exit(2);
}

const client = new Client({ name: "quilt-test-client", version: "1.0.0" });
const out = { sdk_latest: LATEST_PROTOCOL_VERSION, protocol: null, calls: [] };
// The SDK tells a transport the revision `initialize` agreed; record it.
const told = transport.setProtocolVersion?.bind(transport);
transport.setProtocolVersion = (v) => {
  out.protocol = v;
  told?.(v);
};
try {
  await client.connect(transport);
  out.server = client.getServerVersion();
  const listed = await client.listTools();
  out.tools = listed.tools;
  for (const c of calls) {
    const t0 = performance.now();
    try {
      const r = await client.callTool({ name: c.name, arguments: c.arguments ?? {} });
      out.calls.push({ name: c.name, ms: performance.now() - t0, result: r });
    } catch (e) {
      out.calls.push({ name: c.name, ms: performance.now() - t0, thrown: String(e?.message ?? e), code: e?.code ?? null });
    }
  }
} catch (e) {
  // fetch's own error says only "fetch failed"; the reason is its cause.
  out.failed = String(e?.stack ?? e) + (e?.cause ? `; cause: ${e.cause.message ?? e.cause}` : "");
} finally {
  await client.close().catch(() => {});
}
console.log(JSON.stringify(out));
process.exit(out.failed ? 1 : 0);
