/** The bytes of an image or snapshot for a GET: raw, or as a qcow2 file (`?format=qcow2`). */
import { type FrozenView, Qcow2View } from "../core/mod.ts";
import { dataResponse } from "./data_response.ts";

/** `view` as raw bytes (`format` absent or `raw`) or a qcow2 file, with Range; TypeError otherwise. */
export async function frozenData(
  view: FrozenView,
  format: string | undefined,
  rangeHeader: string | undefined,
): Promise<Response> {
  if (format === undefined || format === "raw") return await dataResponse(view, rangeHeader);
  if (format !== "qcow2") {
    throw new TypeError(
      `Cannot read ${view.name}: format must be raw or qcow2, not ${JSON.stringify(format)}`,
    );
  }
  return await dataResponse(new Qcow2View(view), rangeHeader);
}
