// hello: the smallest Quilt tool, for start-up latency benchmarks. Prints one
// JSON line greeting its input (stdin parsed as JSON; null when stdin is empty
// or not JSON). Exit 0.
const text = await Bun.stdin.text();
let input: unknown = null;
try {
  input = text.trim() === "" ? null : JSON.parse(text);
} catch {
  input = null;
}
console.log(JSON.stringify({ hello: "quilt", input }));
