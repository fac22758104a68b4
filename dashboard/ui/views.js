/** The dashboard's sections: what each table shows of the API's answers. */
import { bytes, count, percent } from "./format.js";
import { element, PagedTable } from "./table.js";
import {
  eventColumns,
  healingColumns,
  imageColumns,
  memberColumns,
  volumeColumns,
} from "./columns.js";

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
      columns: memberColumns,
    });
    this.#volumes = new PagedTable(byId("volumes"), {
      key: (row) => row.name,
      pageSize: 50,
      placeholder: "filter volumes (name, origin, holder)",
      columns: volumeColumns,
    });
    this.#images = new PagedTable(byId("images"), {
      key: (row) => row.name,
      pageSize: 20,
      placeholder: "filter images",
      columns: imageColumns,
    });
    this.#healing = new PagedTable(byId("healing"), {
      key: (row) => row.id,
      pageSize: 10,
      placeholder: "filter members",
      columns: healingColumns,
    });
    this.#events = new PagedTable(byId("events"), {
      key: (row) => String(row.seq),
      pageSize: 15,
      placeholder: "filter events (lease, member, collection, volume...)",
      columns: eventColumns,
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
    const backlog = view.members.reduce(
      (sum, row) => sum + (row.figures?.healUnderReplicated ?? 0),
      0,
    );
    byId("healing-summary").textContent = healing === undefined
      ? "A single node: nothing to heal."
      : `Backlog ${count(backlog)} items short of copies; this node ${
        healing.running ? "is healing now" : "is idle"
      } (${count(healing.passes)} passes).`;
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

function byId(id) {
  return document.getElementById(id);
}
