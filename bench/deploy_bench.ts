/**
 * What deploying a VM costs (issue 11): a thin clone of an image created over
 * HTTP, an NBD connection to it, and its first 4 KiB read, one after another
 * as a VM start does them, timed inside one client process (Python: urllib
 * and libnbd) so that no process start is counted. Through a single node (the
 * reference, same run) and through a member of a 3-node cluster that did not
 * upload the image. Goal: clone + open + first read ≤ 20 ms p50.
 *
 * Run: `deno run -A bench/deploy_bench.ts [--deploys N] [--rounds N]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startCluster } from "../tests/_cluster.ts";
import { removeData, startNode, type TestNode } from "../tests/_node.ts";
import { MiB, nbdPython, uploadImage } from "../tests/_nbd.ts";
import { patternBytes } from "../tests/_files.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { deploys: { type: "string", default: "40" }, rounds: { type: "string", default: "2" } },
});

const deploys = `
import time, urllib.request
base, nbd_base, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = []
for i in range(count):
    name = f"{prefix}{i}"
    t0 = time.monotonic()
    body = json.dumps({"name": name, "image": "img"}).encode()
    req = urllib.request.Request(base + "/v1/volumes", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req).read()
    t1 = time.monotonic()
    c = nbd.NBD(); c.connect_uri(nbd_base + "/" + name)
    t2 = time.monotonic()
    c.pread(4096, 0)
    t3 = time.monotonic()
    c.shutdown()
    rows.append([(t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000])
print(json.dumps(rows))
`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(node: TestNode, prefix: string): Promise<string> {
  const rows = await nbdPython(deploys, [
    node.url,
    node.nbd,
    prefix,
    values.deploys!,
  ]) as number[][];
  const [clone, open, read] = [0, 1, 2].map((i) => median(rows.map((row) => row[i])));
  const total = median(rows.map((row) => row[0] + row[1] + row[2]));
  return `clone ${clone.toFixed(1)} + open ${open.toFixed(1)} + first read ${read.toFixed(1)} ` +
    `ms (p50 each); whole p50 ${total.toFixed(1)} ms`;
}

const image = patternBytes(64 * MiB, 9);
const single = await startNode();
const cluster = await startCluster(3);
try {
  await uploadImage(single, "img", image);
  await uploadImage(cluster.nodes[0], "img", image);
  for (let round = 1; round <= Number(values.rounds); round++) {
    console.log(`round ${round}`);
    console.log(`  single node           ${await measure(single, `s${round}x`)}`);
    console.log(`  cluster, other member ${await measure(cluster.nodes[1], `c${round}x`)}`);
  }
} finally {
  await cluster.stop();
  await single.stop();
  await removeData(single);
}
