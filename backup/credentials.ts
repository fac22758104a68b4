/**
 * Where backups find their S3 credentials, region and endpoint: the usual AWS
 * environment variables first, then the shared profile files, as the AWS CLI
 * and SDKs do (a subset: static keys, with or without a session token).
 *
 * - keys: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; else
 *   the profile `AWS_PROFILE` (default `default`) of `AWS_SHARED_CREDENTIALS_FILE`
 *   (default `~/.aws/credentials`), then of `AWS_CONFIG_FILE` (`~/.aws/config`).
 * - region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1`.
 * - endpoint: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's
 *   `endpoint_url`; with one, buckets go in the path (radosgw, MinIO); without,
 *   AWS's `https://BUCKET.s3.REGION.amazonaws.com`.
 */
import ini from "ini";
import type { S3Config } from "./s3_client.ts";

/** Reads the environment and the profile files now (so rotated keys are picked up). */
export function s3ConfigFromEnvironment(env: Record<string, string | undefined>): S3Config {
  const profileName = env.AWS_PROFILE ?? "default";
  const home = env.HOME ?? "";
  const credentials = section(
    env.AWS_SHARED_CREDENTIALS_FILE ?? `${home}/.aws/credentials`,
    profileName,
  );
  const config = section(
    env.AWS_CONFIG_FILE ?? `${home}/.aws/config`,
    profileName === "default" ? "default" : `profile ${profileName}`,
  );
  const profile = { ...config, ...credentials };
  const fromEnv = env.AWS_ACCESS_KEY_ID !== undefined;
  const accessKeyId = fromEnv ? env.AWS_ACCESS_KEY_ID : profile.aws_access_key_id;
  const secretAccessKey = fromEnv ? env.AWS_SECRET_ACCESS_KEY : profile.aws_secret_access_key;
  const sessionToken = fromEnv ? env.AWS_SESSION_TOKEN : profile.aws_session_token;
  if (!accessKeyId || !secretAccessKey) {
    throw new TypeError(
      `Cannot reach S3: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ` +
        `or a profile "${profileName}" in ~/.aws/credentials)`,
    );
  }
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? profile.region ?? "us-east-1";
  const custom = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? profile.endpoint_url;
  if (custom !== undefined && !URL.canParse(custom)) {
    throw new TypeError(`Cannot reach S3: endpoint "${custom}" is not a URL`);
  }
  return {
    accessKeyId,
    secretAccessKey,
    sessionToken: sessionToken || undefined,
    region,
    endpoint: custom ?? `https://s3.${region}.amazonaws.com`,
    pathStyle: custom !== undefined,
  };
}

/** The keys of `[name]` in an INI file; nothing when the file or section is missing. */
function section(path: string, name: string): Record<string, string | undefined> {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw error;
  }
  const found = ini.parse(text)[name];
  return typeof found === "object" && found !== null ? found : {};
}
