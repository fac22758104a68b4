import assert from "node:assert/strict";
import { s3ConfigFromEnvironment } from "./credentials.ts";

Deno.test("s3ConfigFromEnvironment() takes keys, region and endpoint from AWS_* variables", () => {
  const config = s3ConfigFromEnvironment({
    AWS_ACCESS_KEY_ID: "AK",
    AWS_SECRET_ACCESS_KEY: "SK",
    AWS_SESSION_TOKEN: "T",
    AWS_REGION: "eu-west-3",
    AWS_ENDPOINT_URL: "http://127.0.0.1:7480",
    AWS_SHARED_CREDENTIALS_FILE: "/nonexistent",
    AWS_CONFIG_FILE: "/nonexistent",
  });
  assert.deepEqual(config, {
    accessKeyId: "AK",
    secretAccessKey: "SK",
    sessionToken: "T",
    region: "eu-west-3",
    endpoint: "http://127.0.0.1:7480",
    pathStyle: true,
  });
});

Deno.test("s3ConfigFromEnvironment() reads the AWS_PROFILE of the credentials and config files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/credentials`,
      "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n" +
        "[backup]\naws_access_key_id = B\naws_secret_access_key = BS\n",
    );
    await Deno.writeTextFile(`${dir}/config`, "[profile backup]\nregion = ap-south-1\n");
    const env = {
      AWS_SHARED_CREDENTIALS_FILE: `${dir}/credentials`,
      AWS_CONFIG_FILE: `${dir}/config`,
    };
    const config = s3ConfigFromEnvironment({ ...env, AWS_PROFILE: "backup" });
    assert.equal(config.accessKeyId, "B");
    assert.equal(config.secretAccessKey, "BS");
    assert.equal(config.region, "ap-south-1");
    assert.equal(config.endpoint, "https://s3.ap-south-1.amazonaws.com");
    assert.equal(config.pathStyle, false);
    assert.equal(s3ConfigFromEnvironment(env).accessKeyId, "D");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("s3ConfigFromEnvironment() without credentials says how to give them", () => {
  assert.throws(
    () => s3ConfigFromEnvironment({ HOME: "/nonexistent" }),
    (error: Error) => error instanceof TypeError && /AWS_ACCESS_KEY_ID/.test(error.message),
  );
});
