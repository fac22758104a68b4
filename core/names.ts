/** Validation of the names users give to images, volumes and snapshots. */
import { nameLengthMax } from "./limits.ts";

const namePattern = new RegExp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,${nameLengthMax - 1}}$`);

/** True when `name` is a valid image, volume or snapshot name. */
export function isValidName(name: string): boolean {
  return namePattern.test(name);
}

/**
 * Returns `name` when valid, else throws a TypeError that says why.
 *
 * @example
 * ```ts
 * validateName("debian-12", "image"); // "debian-12"
 * ```
 */
export function validateName(name: unknown, what: string): string {
  if (typeof name !== "string") {
    throw new TypeError(`Cannot use ${what} name: expected a string`);
  }
  if (!isValidName(name)) {
    const shown = JSON.stringify(name.length > 64 ? name.slice(0, 64) + "…" : name);
    throw new TypeError(
      `Cannot use ${what} name ${shown}: names are 1-${nameLengthMax} characters of ` +
        `[A-Za-z0-9._-] starting with a letter or digit`,
    );
  }
  return name;
}

/** A snapshot reference `VOLUME@SNAPSHOT`, split and validated. */
export function parseSnapshotRef(ref: unknown): { volume: string; snapshot: string } {
  if (typeof ref !== "string" || ref.split("@").length !== 2) {
    throw new TypeError(
      `Cannot use snapshot reference ${JSON.stringify(ref)}: expected VOLUME@SNAPSHOT`,
    );
  }
  const [volume, snapshot] = ref.split("@");
  return { volume: validateName(volume, "volume"), snapshot: validateName(snapshot, "snapshot") };
}
