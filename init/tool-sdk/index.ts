// @quilt/tool: the TypeScript side of a Quilt tool.
//
// A tool module declares its tools with `@tool({...})` on class methods
// (TC39 standard decorators, as Bun runs them) or with `defineTool(...)`,
// and ends with `serve(...)`. At run time `serve` reads one request from
// stdin, `{"tool": NAME, "input": {...}}`, checks the input against the
// tool's JSON Schema *before* any tool code runs, calls the tool and writes
// one JSON envelope to stdout: `{"result": ...}` or
// `{"error": {"code", "message"}}`. Everything else a tool prints goes to
// stderr (console.log is redirected), so stdout is only the envelope.
//
// `quilt build` loads the built module with QUILT_TOOL_DESCRIBE=1: then
// `serve` prints what was registered (names, descriptions, schemas, and the
// file:line of each definition) instead of running, and the CLI signs that
// into the bundle's manifest. Nothing reads the source text.
//
// Schemas are JSON Schema (draft 2020-12), checked by @cfworker/json-schema:
// no dependencies and no code generation (`new Function`), so nothing is
// compiled at every cold start and it bundles into one file with
// `bun build`. See docs/writing-tools.md.
import { Validator, type Schema } from "@cfworker/json-schema";
import { readFileSync } from "node:fs";

/** A JSON Schema (an object, or `true`/`false`). */
export type JsonSchema = Schema | boolean;

/** What `@tool` and `defineTool` take. */
export interface ToolOptions {
  /** The tool's name in requests; default: the method name. */
  name?: string;
  /** One or two sentences an agent reads to decide when to call it. */
  description: string;
  /** JSON Schema of the input: an object schema. */
  input: JsonSchema;
  /** JSON Schema of the result; checked after the call when given. */
  output?: JsonSchema;
  /** Calls `quilt test` makes through the built tool: the input, and the
   * result it must give (left out: any result). Not signed into the
   * manifest. */
  examples?: { input: unknown; result?: unknown }[];
}

/** One tool as `quilt build` writes it into the manifest. */
export interface ToolDefinition {
  name: string;
  description: string;
  input: JsonSchema;
  output: JsonSchema | null;
  /** `file:line` of the definition (mapped through the source map). */
  site: string;
  /** `ToolOptions.examples`, for `quilt test`. */
  examples: { input: unknown; result?: unknown }[];
}

/** A refusal with a code the caller can act on (`{"error":{code,message}}`). */
export class ToolError extends Error {
  constructor(
    public code: string,
    message: string,
  ) {
    super(message);
    this.name = "ToolError";
  }
}

/** The result envelope, as written to stdout and returned by `call`. */
export type Envelope<T = unknown> =
  | { result: T }
  | { error: { code: string; message: string } };

/** Error codes the runtime itself uses. */
export const Codes = {
  badRequest: "bad_request",
  unknownTool: "unknown_tool",
  invalidInput: "invalid_input",
  invalidOutput: "invalid_output",
  failed: "tool_failed",
} as const;

type Fn = (input: any, ctx: Context) => unknown;

interface Entry {
  options: ToolOptions;
  name: string;
  fn: Fn;
  self: unknown;
  site: string;
  input?: Validator;
  output?: Validator;
}

const registry = new Map<string, Entry>();
const problems: { site: string; message: string }[] = [];

/** Tool names: what the manifest accepts (init/bundle ToolDef::validate). */
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
const MAX_DESCRIPTION = 1024;

/** The file and line of each frame of a stack (mapped through source maps). */
function frames(stack: string | undefined): { file: string; line: string }[] {
  const out: { file: string; line: string }[] = [];
  for (const l of (stack ?? "").split("\n").slice(1)) {
    const m = /\(?((?:file:\/\/)?[^\s()]+?):(\d+)(?::\d+)?\)?\s*$/.exec(l);
    if (m) out.push({ file: m[1].replace(/^file:\/\//, ""), line: m[2] });
  }
  return out;
}

/** This module's own file as stacks name it (bundled or not). */
const SELF = frames(new Error().stack)[0]?.file;

/** `file:line` of the code that called `@tool`/`defineTool`. */
function callSite(): string {
  const f = frames(new Error().stack).find((f) => f.file !== SELF);
  return f ? `${f.file}:${f.line}` : "<unknown>:0";
}

const TYPES = new Set(["null", "boolean", "object", "array", "number", "integer", "string"]);

/** Structural check of a schema, so a typo fails the build, not a call. */
function checkSchema(s: unknown, at: string): string | null {
  if (typeof s === "boolean") return null;
  if (s === null || typeof s !== "object" || Array.isArray(s)) return `${at} is not a schema (an object or a boolean)`;
  const o = s as Record<string, unknown>;
  if ("type" in o) {
    const ts = Array.isArray(o.type) ? o.type : [o.type];
    for (const t of ts) if (typeof t !== "string" || !TYPES.has(t)) return `${at}.type: ${JSON.stringify(t)} is not a JSON Schema type`;
  }
  if ("required" in o && !(Array.isArray(o.required) && o.required.every((r) => typeof r === "string")))
    return `${at}.required must be an array of property names`;
  for (const k of ["properties", "patternProperties", "$defs", "definitions"]) {
    if (!(k in o)) continue;
    const v = o[k];
    if (v === null || typeof v !== "object" || Array.isArray(v)) return `${at}.${k} must be an object of schemas`;
    for (const [p, sub] of Object.entries(v)) {
      const e = checkSchema(sub, `${at}.${k}.${p}`);
      if (e) return e;
    }
  }
  for (const k of ["items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"]) {
    if (k in o) {
      const e = checkSchema(o[k], `${at}.${k}`);
      if (e) return e;
    }
  }
  for (const k of ["allOf", "anyOf", "oneOf", "prefixItems"]) {
    if (!(k in o)) continue;
    const v = o[k];
    if (!Array.isArray(v)) return `${at}.${k} must be an array of schemas`;
    for (const [i, sub] of v.entries()) {
      const e = checkSchema(sub, `${at}.${k}[${i}]`);
      if (e) return e;
    }
  }
  return null;
}

function register(options: ToolOptions, fallbackName: string, fn: Fn, site: string): Entry | undefined {
  const name = options?.name ?? fallbackName;
  const fail = (message: string) => {
    problems.push({ site, message: `tool ${JSON.stringify(name)}: ${message}` });
    return undefined;
  };
  if (typeof name !== "string" || !NAME.test(name))
    return fail("the name must be 1-64 of A-Z a-z 0-9 _ . - and not start with a digit, '.' or '-'");
  if (registry.has(name)) return fail(`defined twice (first at ${registry.get(name)?.site})`);
  if (typeof options?.description !== "string" || options.description.trim() === "")
    return fail("needs a description (what an agent reads to choose it)");
  if (options.description.length > MAX_DESCRIPTION) return fail(`description longer than ${MAX_DESCRIPTION} characters`);
  if (options.input === undefined) return fail("needs an input schema (use {type: \"object\"} for any object)");
  const e = checkSchema(options.input, "input") ?? (options.output === undefined ? null : checkSchema(options.output, "output"));
  if (e) return fail(e);
  if (typeof options.input === "object" && options.input.type !== undefined && options.input.type !== "object")
    return fail("input must be an object schema (type: \"object\"): requests carry named fields");
  const entry: Entry = { options, name, fn, self: undefined, site };
  registry.set(name, entry);
  return entry;
}

/**
 * Declares a class method as a tool (standard decorator):
 *
 * ```ts
 * class Weather {
 *   @tool({ description: "…", input: { type: "object", properties: { city: { type: "string" } } } })
 *   forecast(input: { city: string }) { … }
 * }
 * serve(Weather);
 * ```
 */
export function tool(options: ToolOptions) {
  const site = callSite();
  return function (value: Fn, context: ClassMethodDecoratorContext) {
    const entry = register(options, String(context.name), value, site);
    if (entry) {
      // Runs when the class is instantiated (or defined, for static
      // methods): the tool is called on that object.
      context.addInitializer(function (this: unknown) {
        entry.self ??= this;
      });
    }
  };
}

/** The plain function form of `@tool`: `defineTool({ name, … }, fn)`. */
export function defineTool<I = unknown, O = unknown>(
  options: ToolOptions & { name: string },
  fn: (input: I, ctx: Context) => O | Promise<O>,
): void {
  register(options, options?.name, fn as Fn, callSite());
}

/** What every call gets besides its input. */
export interface Context {
  /** The tool's name as requested. */
  tool: string;
  /** Log to stderr (the run's stderr tail on the board). */
  log(...args: unknown[]): void;
  /** Bus channels this container holds (`bus:` tokens), from QUILT_BUS. */
  busChannels(): BusChannel[];
  /** The `quilt-bus` package (in the runtime layer on a board; kept out
   * of the bundle by `quilt build` so it always matches the board's
   * libquiltbus.so). Typed loosely: its types ship with the package. */
  // biome-ignore lint: the package's own types apply at the call site
  bus(): Promise<any>;
  /** True when this container may spawn children (a `spawn` token). */
  canSpawn(): boolean;
  /** Run another bundle's tool in a child container and wait for its envelope. */
  callTool<T = unknown>(bundle: string, tool: string, input: unknown, timeoutMs?: number): Promise<Envelope<T>>;
  /** The limits this container runs under, as far as it can read them:
   * on a board today only `open_files`; the cgroup figures are null there
   * (see Limits). null means "not readable here", never "unlimited". */
  limits(): Limits;
}

export interface BusChannel {
  topic: string;
  role: string;
  fds: number[];
}

/** What the container may use, as read from inside it.
 *
 * What it cannot read: tool containers have no `/sys` today, so on a
 * board `memory_bytes`, `pids` and `cpu_percent` are always null there
 * (the cgroup still enforces the manifest's `[limits]`; only reading them
 * is missing). They are read from `/sys/fs/cgroup` where it is mounted
 * (e.g. `bun test` on a host, which reports the host's cgroup, not the
 * manifest's). Not reported at all: `io.max` limits, the size of `/tmp`
 * (it follows `memory_mib`), the run's deadline and counted (`llm:`)
 * tokens. A null is "unknown", never "unlimited": a tool must not size its
 * work up because a figure is null. */
export interface Limits {
  /** cgroup `memory.max` in bytes; null on a board (unreadable) or when "max". */
  memory_bytes: number | null;
  /** cgroup `pids.max`; null on a board (unreadable) or when "max". */
  pids: number | null;
  /** cgroup `cpu.max` as a percentage of one CPU; null on a board (unreadable) or when "max". */
  cpu_percent: number | null;
  /** The soft RLIMIT_NOFILE from `/proc/self/limits` (the manifest's
   * `open_files` on a board); null when unlimited or unreadable. */
  open_files: number | null;
}

/** The soft limit of one /proc/self/limits row, e.g. "Max open files". */
function procLimit(row: string): number | null {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith(row));
    const soft = line?.slice(row.length).trim().split(/\s+/)[0];
    return soft === undefined || soft === "unlimited" ? null : Number(soft);
  } catch {
    return null;
  }
}

function readCgroup(file: string): string | null {
  try {
    return readFileSync(`/sys/fs/cgroup/${file}`, "utf8").trim();
  } catch {
    return null;
  }
}

function context(name: string): Context {
  return {
    tool: name,
    log: (...args) => console.error(...args),
    busChannels() {
      const env = process.env.QUILT_BUS ?? "";
      return env
        .split(";")
        .filter((s) => s !== "")
        .map((s) => {
          const [topic, role, fds] = s.split(":");
          return { topic, role, fds: (fds ?? "").split(",").filter((f) => f !== "").map(Number) };
        });
    },
    bus: () => import("quilt-bus"),
    canSpawn: () => process.env.QUILT_CONTROL_FD !== undefined,
    async callTool<T>(bundle: string, tool: string, input: unknown, timeoutMs = 0): Promise<Envelope<T>> {
      const control = await import("./control.ts");
      const id = control.spawn(bundle, { tool, input }, timeoutMs);
      const r = control.wait(id);
      try {
        return JSON.parse(r.stdout) as Envelope<T>;
      } catch {
        return {
          error: {
            code: Codes.failed,
            message: `${bundle} ${tool}: exit ${r.status}${r.oom_killed ? " (out of memory)" : ""}${r.timed_out ? " (deadline)" : ""}, no envelope: ${r.stderr_tail.slice(-200)}`,
          },
        };
      }
    },
    limits() {
      const mem = readCgroup("memory.max");
      const pids = readCgroup("pids.max");
      const cpu = readCgroup("cpu.max");
      const [quota, period] = (cpu ?? "").split(" ");
      return {
        memory_bytes: mem === null || mem === "max" ? null : Number(mem),
        pids: pids === null || pids === "max" ? null : Number(pids),
        cpu_percent: quota && period && quota !== "max" ? (100 * Number(quota)) / Number(period) : null,
        open_files: procLimit("Max open files"),
      };
    },
  };
}

function validator(entry: Entry, which: "input" | "output"): Validator | undefined {
  const schema = entry.options[which];
  if (schema === undefined) return undefined;
  entry[which] ??= new Validator(schema as Schema, "2020-12", false);
  return entry[which];
}

function describeErrors(errors: { instanceLocation: string; error: string; keyword: string }[]): string {
  // The deepest, most specific messages; cfworker also reports each
  // enclosing keyword ("properties", "allOf") that failed because of them.
  const leaf = errors.filter((e) => !["properties", "items", "allOf", "$ref", "additionalProperties"].includes(e.keyword) || errors.length === 1);
  const list = (leaf.length > 0 ? leaf : errors).map((e) => {
    const at = e.instanceLocation === "#" ? "input" : `input${e.instanceLocation.slice(1)}`;
    // A `false` schema (additionalProperties: false, …) says only "False
    // boolean schema."; say what it means.
    return e.keyword === "false" ? `${at}: not allowed by the schema` : `${at}: ${e.error}`;
  });
  return [...new Set(list)].join("; ");
}

/** Calls tool `name` with `input` as the board would: validate, call, validate. */
export async function call<T = unknown>(name: string, input: unknown): Promise<Envelope<T>> {
  if (problems.length > 0) {
    const p = problems[0];
    return { error: { code: Codes.failed, message: `${p.site}: ${p.message}` } };
  }
  const entry = registry.get(name);
  if (!entry) {
    return {
      error: { code: Codes.unknownTool, message: `no tool ${JSON.stringify(name)}; this bundle has: ${[...registry.keys()].join(", ")}` },
    };
  }
  const checked = validator(entry, "input")?.validate(input);
  if (checked && !checked.valid) {
    return { error: { code: Codes.invalidInput, message: describeErrors(checked.errors) } };
  }
  let result: unknown;
  try {
    result = await entry.fn.call(entry.self, input, context(name));
  } catch (e) {
    if (e instanceof ToolError) return { error: { code: e.code, message: e.message } };
    console.error(e);
    return { error: { code: Codes.failed, message: e instanceof Error ? e.message : String(e) } };
  }
  const out = validator(entry, "output")?.validate(result);
  if (out && !out.valid) {
    return { error: { code: Codes.invalidOutput, message: `the tool's result does not match its output schema: ${describeErrors(out.errors).replaceAll("input", "result")}` } };
  }
  return { result: result as T };
}

/** The registered tools, as `quilt build` extracts them. */
export function definitions(): ToolDefinition[] {
  return [...registry.values()]
    .map((e) => ({
      name: e.name,
      description: e.options.description,
      input: e.options.input,
      output: e.options.output ?? null,
      site: e.site,
      examples: e.options.examples ?? [],
    }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Definition problems found so far (`file:line: message`). */
export function definitionErrors(): string[] {
  return problems.map((p) => `${p.site}: ${p.message}`);
}

async function readRequest(): Promise<{ tool: string; input: unknown } | Envelope> {
  const text = await Bun.stdin.text();
  let req: unknown;
  try {
    req = JSON.parse(text);
  } catch (e) {
    return { error: { code: Codes.badRequest, message: `the request is not JSON (${(e as Error).message}); send {"tool": NAME, "input": {...}}` } };
  }
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    return { error: { code: Codes.badRequest, message: 'the request must be an object: {"tool": NAME, "input": {...}}' } };
  }
  const r = req as Record<string, unknown>;
  let name = r.tool;
  if (name === undefined && registry.size === 1) name = [...registry.keys()][0];
  if (typeof name !== "string") {
    return { error: { code: Codes.badRequest, message: `the request names no tool; this bundle has: ${[...registry.keys()].join(", ")}` } };
  }
  return { tool: name, input: r.input ?? {} };
}

/**
 * Runs the module as a tool: one request from stdin, one envelope on
 * stdout, exit 0 (result), 2 (refused: bad request, unknown tool, invalid
 * input) or 1 (the tool failed). `targets` are classes (instantiated once
 * with no arguments) or objects whose `@tool` methods are served.
 */
export async function serve(...targets: unknown[]): Promise<void> {
  for (const t of targets) {
    if (typeof t === "function") new (t as new () => unknown)();
  }
  if (process.env.QUILT_TOOL_DESCRIBE === "1") {
    process.stdout.write(`${JSON.stringify({ tools: definitions(), errors: definitionErrors() })}\n`);
    return;
  }
  // Under `bun test` the tests drive the tools through `call`. (A computed
  // key, so no bundler inlines NODE_ENV.)
  if (process.env[["NODE", "ENV"].join("_")] === "test") return;
  // stdout carries only the envelope.
  console.log = console.error;
  console.info = console.error;
  console.debug = console.error;
  const req = await readRequest();
  const env = "tool" in req ? await call(req.tool, req.input) : req;
  process.stdout.write(`${JSON.stringify(env)}\n`);
  if ("error" in env) {
    process.exitCode = env.error.code === Codes.failed || env.error.code === Codes.invalidOutput ? 1 : 2;
  }
}
