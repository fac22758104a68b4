import { deepEqual, equal } from "node:assert/strict";
import * as fs from "node:fs";
import { bufferedWriteBytesMax, readAll, writeAll } from "./_file_io.ts";

Deno.test("writeAll() writes every byte of a write larger than one piece, at any offset", () => {
  const dir = Deno.makeTempDirSync();
  const fd = fs.openSync(`${dir}/f`, "w+");
  try {
    const data = new Uint8Array(16 * bufferedWriteBytesMax + 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 16)) & 0xff;
    writeAll(fd, data, 4093);
    const back = new Uint8Array(data.length + 4093);
    equal(readAll(fd, back, 0), back.length);
    deepEqual(back.subarray(0, 4093), new Uint8Array(4093));
    deepEqual(back.subarray(4093), data);
  } finally {
    fs.closeSync(fd);
    Deno.removeSync(dir, { recursive: true });
  }
});
