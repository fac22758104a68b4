/** The dashboard's sections: what each table shows of the API's answers. */
import { bytes, clock, count, origin, percent, shortId } from "./format.js";
import { element, PagedTable } from "./table.js";

const numeric = true;

/** Builds the tables once; `render(view)` fills them at each refresh. */
export class Views {
  #members;
  #volumes;
  #images;
  #healing;
  #events;

  constructor() {
    this.#members = new PagedTable(byId("members"), {
      key: (row) => row.id,
      pageSize: 25,
      placeholder: "filter members (id, address, state, zone)",
      columns: [
        { title: "member", field: "id", text: (row) => `${shortId(row.id)}${row.self ? " (this node)" : ""}` },
        { title: "address", field: "address", text: (row) => row.address },
        { title: "state", field: "state", text: (row) => row.state, cell: stateCell },
        { title: "zone", field: "zone", text: (row) => row.zone ?? "—" },
        { title: "weight", field: "weight", text: (row) => count(row.weight, 2), numeric },
        { title: "disk used", field: "disk", text: (row) => diskText(row.figures), value: (row) => diskUse(row.figures) ?? -1, cell: (td, row) => bar(td, diskUse(row.figures)) },
        { title: "stored", field: "stored", text: (row) => bytes(row.figures?.storedBytes), value: (row) => row.figures?.storedBytes ?? -1, numeric },
        { title: "NBD conns", field: "nbd", text: (row) => count(row.figures?.nbdConnections), numeric },
        { title: "volumes open", field: "open", text: (row) => count(row.rate?.volumesOpen), numeric },
        { title: "IOPS", field: "iops", text: (row) => count(row.rate?.iops), value: (row) => row.rate?.iops ?? -1, numeric },
        { title: "CPU", field: "cpu", text: (row) => percent(row.rate?.cpu), value: (row) => row.rate?.cpu ?? -1, numeric },
        { title: "memory", field: "memory", text: (row) => bytes(row.figures?.residentMemoryBytes), value: (row) => row.figures?.residentMemoryBytes ?? -1, numeric },
        { title: "load", field: "load", text: (row) => count(row.loadAverage, 2), numeric },
        { title: "note", field: "note", text: (row) => row.error ?? "" },
      ],
    });
    this.#volumes = new PagedTable(byId("volumes"), {
      key: (row) => row.name,
      pageSize: 50,
      placeholder: "filter volumes (name, origin, holder)",
      columns: [
        { title: "volume", field: "name", text: (row) => row.name },
        { title: "size", field: "size", text: (row) => bytes(row.size), value: (row) => row.size, numeric },
        { title: "allocated", field: "allocated", text: (row) => bytes(row.allocatedBytes), value: (row) => row.allocatedBytes, numeric },
        { title: "origin", field: "origin", text: (row) => origin(row.origin) },
        { title: "lease holder", field: "holder", text: (row) => row.holderText, cell: (td, row) => (td.dataset.holder = row.lease?.holder ?? "") },
        { title: "epoch", field: "epoch", text: (row) => count(row.lease?.epoch), value: (row) => row.lease?.epoch ?? -1, numeric },
        { title: "IOPS", field: "iops", text: (row) => count(row.rate?.iops), value: (row) => row.rate?.iops ?? -1, numeric, cell: (td, row) => (td.dataset.value = String(row.rate?.iops ?? 0)) },
        { title: "read/write IOPS", field: "rw", text: (row) => row.rate ? `${count(row.rate.readIops)} / ${count(row.rate.writeIops)}` : "—" },
        { title: "throughput", field: "throughput", text: (row) => row.rate ? `${bytes(row.rate.bytesPerSecond)}/s` : "—", value: (row) => row.rate?.bytesPerSecond ?? -1, numeric },
        { title: "latency", field: "latency", text: (row) => row.rate?.latencySeconds == null ? "—" : `${count(row.rate.latencySeconds * 1000, 2)} ms`, value: (row) => row.rate?.latencySeconds ?? -1, numeric },
        { title: "open on", field: "open", text: (row) => row.rate ? row.rate.members.map(shortId).join(", ") : "" },
      ],
    });
    this.#images = new PagedTable(byId("images"), {
      key: (row) => row.name,
      pageSize: 20,
      placeholder: "filter images",
      columns: [
        { title: "image", field: "name", text: (row) => row.name },
        { title: "size", field: "size", text: (row) => bytes(row.size), value: (row) => row.size, numeric },
        { title: "data", field: "data", text: (row) => bytes(row.dataBytes), value: (row) => row.dataBytes, numeric },
        { title: "zeros (not stored)", field: "zeros", text: (row) => bytes(row.size - row.dataBytes), value: (row) => row.size - row.dataBytes, numeric },
        { title: "clones", field: "clones", text: (row) => count(row.clones), value: (row) => row.clones, numeric },
        { title: "saved by sharing", field: "saved", text: (row) => bytes(row.clones * row.dataBytes), value: (row) => row.clones * row.dataBytes, numeric },
      ],
    });
    this.#healing = new PagedTable(byId("healing"), {
      key: (row) => row.id,
      pageSize: 10,
      placeholder: "filter members",
      columns: [
        { title: "member", field: "id", text: (row) => shortId(row.id) },
        { title: "backlog", field: "backlog", text: (row) => count(row.figures?.healUnderReplicated), value: (row) => row.figures?.healUnderReplicated ?? -1, numeric },
        { title: "blocks copied", field: "blocks", text: (row) => count(row.figures?.healBlocksCopied), numeric },
        { title: "objects copied", field: "objects", text: (row) => count(row.figures?.healObjectsCopied), numeric },
        { title: "passes", field: "passes", text: (row) => count(row.figures?.healPasses), numeric },
      ],
    });
    this.#events = new PagedTable(byId("events"), {
      key: (row) => String(row.seq),
      pageSize: 15,
      placeholder: "filter events (lease, member, collection, volume...)",
      columns: [
        { title: "time", field: "time", text: (row) => clock(row.time), value: (row) => row.seq },
        { title: "level", field: "level", text: (row) => row.level, cell: (td, row) => td.classList.add(`level-${row.level}`) },
        { title: "component", field: "component", text: (row) => row.component },
        { title: "event", field: "message", text: (row) => row.message },
      ],
    });
  }

  /** Fills every section from one refresh's `view` (app.js builds it). */
  render(view) {
    summary(view);
    this.#members.update(view.members);
    this.#volumes.update(view.volumes);
    this.#images.update(view.images);
    this.#healing.update(view.members.filter((member) => member.figures?.healPasses !== undefined));
    const healing = view.cluster.healing;
    const backlog = view.members.reduce((sum, row) => sum + (row.figures?.healUnderReplicated ?? 0), 0);
    byId("healing-summary").textContent = healing === undefined
      ? "A single node: nothing to heal."
      : `Backlog ${count(backlog)} items short of copies; this node ${healing.running ? "is healing now" : "is idle"} (${count(healing.passes)} passes).`;
    this.#events.update([...view.events].reverse());
  }
}

function summary(view) {
  const alive = view.members.filter((member) => member.state === "alive").length;
  const stored = view.members.reduce((sum, row) => sum + (row.figures?.storedBytes ?? 0), 0);
  const free = view.members.reduce((sum, row) => sum + (row.figures?.diskFreeBytes ?? 0), 0);
  const iops = [...view.rates.volumes.values()].reduce((sum, rate) => sum + rate.iops, 0);
  const self = view.members.find((member) => member.self)?.figures ?? {};
  const logical = (self.imagesLogicalBytes ?? 0) + (self.volumesAllocatedBytes ?? 0);
  const cards = [
    ["members", `${alive} alive of ${view.members.length}`],
    ["volumes", `${view.volumes.length} (${view.rates.volumes.size} open)`],
    ["IOPS", count(iops)],
    ["images", String(view.images.length)],
    ["stored (all copies)", bytes(stored)],
    ["free disk", bytes(free)],
    ["logical data", `${bytes(logical)} (images and volumes)`],
    ["upload dedup", percent(self.uploadDedupRatio)],
  ];
  byId("summary").replaceChildren(...cards.map(([title, value]) => {
    const card = element("div", { className: "card" });
    card.dataset.card = title;
    card.append(element("span", { className: "title", textContent: title }));
    card.append(element("span", { className: "value", textContent: value }));
    return card;
  }));
}

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

function byId(id) {
  return document.getElementById(id);
}
