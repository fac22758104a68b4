/** The columns of the dashboard's tables: what each shows of a row, how it sorts. */
import { bytes, clock, count, origin, percent, shortId } from "./format.js";

const numeric = true;

/** Members: state, zone, capacity (disk, stored) and load (NBD, IOPS, CPU, memory). */
export const memberColumns = [
  {
    title: "member",
    field: "id",
    text: (row) => `${shortId(row.id)}${row.self ? " (this node)" : ""}`,
  },
  { title: "address", field: "address", text: (row) => row.address },
  { title: "state", field: "state", text: (row) => row.state, cell: stateCell },
  { title: "zone", field: "zone", text: (row) => row.zone ?? "—" },
  { title: "weight", field: "weight", text: (row) => count(row.weight, 2), numeric },
  {
    title: "disk used",
    field: "disk",
    text: (row) => diskText(row.figures),
    value: (row) => diskUse(row.figures) ?? -1,
    cell: (td, row) => bar(td, diskUse(row.figures)),
  },
  {
    title: "stored",
    field: "stored",
    text: (row) => bytes(row.figures?.storedBytes),
    value: (row) => row.figures?.storedBytes ?? -1,
    numeric,
  },
  {
    title: "NBD conns",
    field: "nbd",
    text: (row) => count(row.figures?.nbdConnections),
    numeric,
  },
  {
    title: "volumes open",
    field: "open",
    text: (row) => count(row.rate?.volumesOpen),
    numeric,
  },
  {
    title: "IOPS",
    field: "iops",
    text: (row) => count(row.rate?.iops),
    value: (row) => row.rate?.iops ?? -1,
    numeric,
  },
  {
    title: "CPU",
    field: "cpu",
    text: (row) => percent(row.rate?.cpu),
    value: (row) => row.rate?.cpu ?? -1,
    numeric,
  },
  {
    title: "memory",
    field: "memory",
    text: (row) => bytes(row.figures?.residentMemoryBytes),
    value: (row) => row.figures?.residentMemoryBytes ?? -1,
    numeric,
  },
  {
    title: "loop lag",
    field: "lag",
    text: (row) =>
      row.figures?.eventLoopLagSeconds === undefined
        ? "—"
        : `${count(row.figures.eventLoopLagSeconds * 1000, 1)} ms`,
    value: (row) => row.figures?.eventLoopLagSeconds ?? -1,
    numeric,
  },
  { title: "load", field: "load", text: (row) => count(row.loadAverage, 2), numeric },
  { title: "note", field: "note", text: (row) => row.error ?? "" },
];

/** Volumes: size, allocation, origin, lease, and live I/O (rates.js). */
export const volumeColumns = [
  { title: "volume", field: "name", text: (row) => row.name },
  {
    title: "size",
    field: "size",
    text: (row) => bytes(row.size),
    value: (row) => row.size,
    numeric,
  },
  {
    title: "allocated",
    field: "allocated",
    text: (row) => bytes(row.allocatedBytes),
    value: (row) => row.allocatedBytes,
    numeric,
  },
  { title: "origin", field: "origin", text: (row) => origin(row.origin) },
  {
    title: "lease holder",
    field: "holder",
    text: (row) => row.holderText,
    cell: (td, row) => (td.dataset.holder = row.lease?.holder ?? ""),
  },
  {
    title: "epoch",
    field: "epoch",
    text: (row) => count(row.lease?.epoch),
    value: (row) => row.lease?.epoch ?? -1,
    numeric,
  },
  {
    title: "IOPS",
    field: "iops",
    text: (row) => count(row.rate?.iops),
    value: (row) => row.rate?.iops ?? -1,
    numeric,
    cell: (td, row) => (td.dataset.value = String(row.rate?.iops ?? 0)),
  },
  {
    title: "read/write IOPS",
    field: "rw",
    text: (row) => row.rate ? `${count(row.rate.readIops)} / ${count(row.rate.writeIops)}` : "—",
  },
  {
    title: "throughput",
    field: "throughput",
    text: (row) => row.rate ? `${bytes(row.rate.bytesPerSecond)}/s` : "—",
    value: (row) => row.rate?.bytesPerSecond ?? -1,
    numeric,
  },
  {
    title: "latency",
    field: "latency",
    text: (row) =>
      row.rate?.latencySeconds == null ? "—" : `${count(row.rate.latencySeconds * 1000, 2)} ms`,
    value: (row) => row.rate?.latencySeconds ?? -1,
    numeric,
  },
  {
    title: "open on",
    field: "open",
    text: (row) => row.rate ? row.rate.members.map(shortId).join(", ") : "",
  },
];

/** Images: data against zeros, and the clones that share them. */
export const imageColumns = [
  { title: "image", field: "name", text: (row) => row.name },
  {
    title: "size",
    field: "size",
    text: (row) => bytes(row.size),
    value: (row) => row.size,
    numeric,
  },
  {
    title: "data",
    field: "data",
    text: (row) => bytes(row.dataBytes),
    value: (row) => row.dataBytes,
    numeric,
  },
  {
    title: "zeros (not stored)",
    field: "zeros",
    text: (row) => bytes(row.size - row.dataBytes),
    value: (row) => row.size - row.dataBytes,
    numeric,
  },
  {
    title: "clones",
    field: "clones",
    text: (row) => count(row.clones),
    value: (row) => row.clones,
    numeric,
  },
  {
    title: "saved by sharing",
    field: "saved",
    text: (row) => bytes(row.clones * row.dataBytes),
    value: (row) => row.clones * row.dataBytes,
    numeric,
  },
];

/** Healing, per member: the backlog and the copies made. */
export const healingColumns = [
  { title: "member", field: "id", text: (row) => shortId(row.id) },
  {
    title: "backlog",
    field: "backlog",
    text: (row) => count(row.figures?.healUnderReplicated),
    value: (row) => row.figures?.healUnderReplicated ?? -1,
    numeric,
  },
  {
    title: "blocks copied",
    field: "blocks",
    text: (row) => count(row.figures?.healBlocksCopied),
    numeric,
  },
  {
    title: "objects copied",
    field: "objects",
    text: (row) => count(row.figures?.healObjectsCopied),
    numeric,
  },
  {
    title: "passes",
    field: "passes",
    text: (row) => count(row.figures?.healPasses),
    numeric,
  },
];

/** Recent events of this node. */
export const eventColumns = [
  { title: "time", field: "time", text: (row) => clock(row.time), value: (row) => row.seq },
  {
    title: "level",
    field: "level",
    text: (row) => row.level,
    cell: (td, row) => td.classList.add(`level-${row.level}`),
  },
  { title: "component", field: "component", text: (row) => row.component },
  { title: "event", field: "message", text: (row) => row.message },
];

function stateCell(td, row) {
  td.classList.add(`state-${row.state}`);
}

function diskUse(figures) {
  if (!figures?.diskSizeBytes) return null;
  return 1 - figures.diskFreeBytes / figures.diskSizeBytes;
}

function diskText(figures) {
  if (!figures?.diskSizeBytes) return "—";
  return `${percent(diskUse(figures))} of ${bytes(figures.diskSizeBytes)}`;
}

function bar(td, fraction) {
  if (fraction === null) return;
  td.style.setProperty("--fill", `${Math.round(fraction * 100)}%`);
  td.classList.add("bar");
}
