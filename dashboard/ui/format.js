/** How figures read on the dashboard. */

const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 → "1.5 KiB". */
export function bytes(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return "—";
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** A count or a rate with at most one decimal; "—" when unknown. */
export function count(value, digits = 0) {
  if (value === undefined || value === null || Number.isNaN(value)) return "—";
  return value.toLocaleString("en", { maximumFractionDigits: digits });
}

/** 0.4213 → "42%". */
export function percent(value) {
  if (value === undefined || value === null || Number.isNaN(value)) return "—";
  return `${Math.round(value * 100)}%`;
}

/** The first 8 characters of a member id (ids are UUIDs). */
export function shortId(id) {
  return id ? id.slice(0, 8) : "—";
}

/** Where a volume came from, in a few words. */
export function origin(value) {
  if (!value) return "—";
  if (value.kind === "image") return `image ${value.image}`;
  if (value.kind === "snapshot") return `snapshot ${value.volume}@${value.snapshot}`;
  if (value.kind === "flattened") return `flattened (${origin(value.from)})`;
  return value.kind;
}

/** "17:46:29" of an ISO time. */
export function clock(iso) {
  return new Date(iso).toLocaleTimeString("en-GB");
}
