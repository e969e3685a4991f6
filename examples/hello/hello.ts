// hello: the smallest Quilt tool, for start-up latency benchmarks. Prints one
// JSON line greeting its input (stdin parsed as JSON; null when stdin is empty
// or not JSON). Exit 0.
//
// It is the one example left without the SDK, to show the low-level
// protocol every tool speaks underneath: quilt-init hands the tool its
// input as bytes on stdin and returns its stdout, stderr tail and exit
// status; nothing is parsed on the way (README.md). The other examples
// use @quilt/tool (docs/writing-tools.md).
const text = await Bun.stdin.text();
let input: unknown = null;
try {
  input = text.trim() === "" ? null : JSON.parse(text);
} catch {
  input = null;
}
console.log(JSON.stringify({ hello: "quilt", input }));
