// panva's openid-client (v6) as an independent DPoP client (RFC 9449) of a live
// `tokensmith serve`: driven by tests/test_interop_node.py, which starts the servers,
// registers the clients and issues the public client's first refresh token.
//
// Input (JSON on stdin, so no secret shows in the process list):
//   issuer, api (the guarded API's URL), confidential {client_id, client_secret, scope},
//   public {client_id, refresh_token, private_jwk (the key the refresh token is bound to)}
// Output (JSON on stdout): what each step got back, and every HTTP exchange the library
// made (method, URL, status, whether a proof and a nonce were sent, the error), so the
// test can see the nonce retries happen. Any unexpected failure exits non-zero.
import * as client from 'openid-client';

const exchanges = [];

function claims(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
}

// Records each exchange; the bodies of error answers are read from a clone.
async function recordingFetch(url, options) {
  const headers = new Headers(options?.headers);
  const proof = headers.get('dpop');
  const response = await fetch(url, options);
  let error = null;
  if (!response.ok) {
    const challenge = response.headers.get('www-authenticate');
    error = challenge ?? (await response.clone().text());
  }
  exchanges.push({
    method: options?.method ?? 'GET',
    url: String(url),
    status: response.status,
    dpop: proof !== null,
    nonce: proof === null ? null : (claims(proof).nonce ?? null),
    scheme: (headers.get('authorization') ?? '').split(' ')[0] || null,
    dpop_nonce_header: response.headers.get('dpop-nonce') !== null,
    error,
  });
  return response;
}

function configure(config) {
  config[client.customFetch] = recordingFetch;
  client.allowInsecureRequests(config); // loopback plain HTTP only: the test's servers
  return config;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString());
}

// The API's answer; a challenge (WWW-Authenticate) is thrown by the library, and
// reported here as its status and `error` parameter.
async function callApi(config, handle, accessToken, url) {
  try {
    const response = await client.fetchProtectedResource(
      config, accessToken, new URL(url), 'GET', undefined, undefined, { DPoP: handle },
    );
    return { status: response.status, body: response.ok ? await response.json() : null };
  } catch (e) {
    if (e.status === undefined) throw e;
    return { status: e.status, error: e.cause?.[0]?.parameters?.error ?? null };
  }
}

// A refresh the server must refuse: the library's error code, never a success.
async function refusedRefresh(config, refreshToken, options) {
  try {
    await client.refreshTokenGrant(config, refreshToken, undefined, options);
  } catch (e) {
    return e.error ?? e.code ?? String(e);
  }
  throw new Error('the server accepted a refresh it had to refuse');
}

async function main() {
  const input = await readStdin();
  const report = {};
  const issuer = new URL(input.issuer);
  const api = `${input.api}/api/me`;

  // 1. Discovery, then client_credentials with a fresh key: a DPoP-bound access token.
  const conf = configure(await client.discovery(
    issuer,
    input.confidential.client_id,
    undefined,
    client.ClientSecretBasic(input.confidential.client_secret),
    { execute: [client.allowInsecureRequests], [client.customFetch]: recordingFetch },
  ));
  const metadata = conf.serverMetadata();
  report.dpop_signing_alg_values_supported = metadata.dpop_signing_alg_values_supported ?? null;
  const ccKey = await client.randomDPoPKeyPair('ES256');
  const ccHandle = client.getDPoPHandle(conf, ccKey);
  const cc = await client.clientCredentialsGrant(
    conf, { scope: input.confidential.scope }, { DPoP: ccHandle },
  );
  report.client_credentials = {
    token_type: cc.token_type,
    cnf_jkt: claims(cc.access_token).cnf?.jkt ?? null,
    key_jkt: await ccHandle.calculateThumbprint(),
    api: await callApi(conf, ccHandle, cc.access_token, api),
  };

  // 2. The public client: its refresh token is bound to the key given (issued from
  //    Python); two rotations, the API with the newest access token, and a refresh
  //    with another key refused without spending the token.
  const pub = configure(new client.Configuration(
    metadata, input.public.client_id, undefined, client.None(),
  ));
  const jwk = input.public.private_jwk;
  const publicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const pair = {
    privateKey: await crypto.subtle.importKey('jwk', jwk, algorithm, false, ['sign']),
    publicKey: await crypto.subtle.importKey('jwk', publicJwk, algorithm, true, ['verify']),
  };
  const handle = client.getDPoPHandle(pub, pair);
  const otherHandle = client.getDPoPHandle(pub, await client.randomDPoPKeyPair('ES256'));
  const key_jkt = await handle.calculateThumbprint();
  const wrongKey = await refusedRefresh(pub, input.public.refresh_token, { DPoP: otherHandle });
  const noProof = await refusedRefresh(pub, input.public.refresh_token, undefined);
  const first = await client.refreshTokenGrant(pub, input.public.refresh_token, undefined, {
    DPoP: handle,
  });
  const second = await client.refreshTokenGrant(pub, first.refresh_token, undefined, {
    DPoP: handle,
  });
  const stolen = await callApi(pub, otherHandle, second.access_token, api);
  report.refresh = {
    key_jkt,
    wrong_key: wrongKey,
    no_proof: noProof,
    token_types: [first.token_type, second.token_type],
    cnf_jkt: [claims(first.access_token).cnf?.jkt, claims(second.access_token).cnf?.jkt],
    rotated: first.refresh_token !== input.public.refresh_token
      && second.refresh_token !== first.refresh_token,
    sid: [claims(first.access_token).sid, claims(second.access_token).sid],
    api: await callApi(pub, handle, second.access_token, api),
    api_other_key: stolen,
  };
  report.exchanges = exchanges;
  process.stdout.write(JSON.stringify(report));
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n${JSON.stringify({ exchanges })}\n`);
  process.exit(1);
});
