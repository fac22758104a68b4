/**
 * The dashboard served at `/`: every {@linkcode refreshMs} it reads the
 * node's API (`v1/cluster`, `v1/stats`, `v1/volumes`, `v1/images`,
 * `v1/events`), the same routes any client uses, and redraws. A refresh
 * starts only when the previous one is done, so a slow node is never asked
 * twice at once.
 */
import { getJson, setToken, token, Unauthorized } from "./api.js";
import { shortId } from "./format.js";
import { Rates } from "./rates.js";
import { Views } from "./views.js";

const refreshMs = 1500;

const rates = new Rates();
const views = new Views();
const status = document.getElementById("status");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token-input");
const forget = document.getElementById("forget-token");
let refreshes = 0;
let timer = null;

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(tokenInput.value.trim());
  tokenInput.value = "";
  refreshNow();
});
forget.addEventListener("click", () => {
  setToken(null);
  refreshNow();
});

function refreshNow() {
  clearTimeout(timer);
  refresh();
}

async function refresh() {
  try {
    const [cluster, stats, volumes, images, events] = await Promise.all([
      getJson("v1/cluster"),
      getJson("v1/stats"),
      getJson("v1/volumes"),
      getJson("v1/images"),
      getJson("v1/events"),
    ]);
    views.render(viewOf({ cluster, stats, volumes, images, events: events.events }));
    tokenForm.hidden = true;
    document.getElementById("main").hidden = false;
    forget.hidden = token() === null;
    refreshes++;
    document.body.dataset.refreshes = String(refreshes);
    status.textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
    status.className = "";
  } catch (error) {
    if (error instanceof Unauthorized) {
      tokenForm.hidden = false;
      document.getElementById("main").hidden = true;
      document.getElementById("token-error").textContent = token() === null ? "" : error.message;
      status.textContent = "token required";
      return; // no refresh until a token is given
    }
    status.textContent = `cannot refresh: ${error.message}`;
    status.className = "error";
  }
  timer = setTimeout(refresh, refreshMs);
}

/** One refresh's answers joined: members with their figures, volumes with their rates. */
function viewOf({ cluster, stats, volumes, images, events }) {
  const sampled = rates.update(stats.members);
  const statsOf = new Map(stats.members.map((member) => [member.id, member]));
  const selfId = stats.members[0]?.id; // this node answers first
  const members = cluster.members.map((member) => {
    const own = statsOf.get(member.id);
    return {
      ...member,
      self: member.id === selfId,
      figures: own?.stats?.figures,
      loadAverage: own?.stats?.loadAverage,
      rate: sampled.members.get(member.id),
      error: own?.error ?? null,
    };
  });
  const addressOf = new Map(members.map((member) => [member.id, member.address]));
  document.getElementById("node-name").textContent = `node ${shortId(selfId)}`;
  const clones = new Map();
  for (const volume of volumes) {
    if (volume.origin?.kind === "image") {
      clones.set(volume.origin.image, (clones.get(volume.origin.image) ?? 0) + 1);
    }
  }
  return {
    cluster,
    rates: sampled,
    members,
    events,
    volumes: volumes.map((volume) => ({
      ...volume,
      allocatedBytes: Math.min(volume.size, volume.allocatedBlocks * volume.blockSize),
      holderText: volume.lease?.holder
        ? `${shortId(volume.lease.holder)} ${addressOf.get(volume.lease.holder) ?? ""}`.trim()
        : "—",
      rate: sampled.volumes.get(volume.name),
    })),
    images: images.map((image) => ({
      ...image,
      dataBytes: Math.min(image.size, (image.blocks - image.zeroBlocks) * image.blockSize),
      clones: clones.get(image.name) ?? 0,
    })),
  };
}

refresh();
