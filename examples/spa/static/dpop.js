// DPoP for the SPA example (RFC 9449), plain WebCrypto and IndexedDB, no library.
//
// window.TokensmithDPoP.open() resolves to a handle with:
//   thumbprint             the key's RFC 7638 thumbprint (the tokens' cnf.jkt), for display
//   fetch(url, init, at)   fetch() with a fresh proof in the DPoP header (§4); with an
//                          access token `at`, also `Authorization: DPoP at` and the proof's
//                          `ath` (§7.1). A server nonce is remembered per origin and a
//                          `use_dpop_nonce` answer retried once with it (§8, §9).
//   store                  get/put/remove of small values in the same IndexedDB database
//   nonceRetries           how many requests were retried for a nonce
'use strict';

(() => {
  const DB_NAME = 'tokensmith-spa';
  const KEYS = 'keys';
  const VALUES = 'values';
  const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' };
  const SIGN = { name: 'ECDSA', hash: 'SHA-256' };  // ES256 (RFC 7518 §3.4): raw r||s
  const text = new TextEncoder();

  function b64u(bytes) {
    let binary = '';
    for (const b of new Uint8Array(bytes)) binary += String.fromCharCode(b);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  const b64uJson = (value) => b64u(text.encode(JSON.stringify(value)));
  const sha256 = (value) => crypto.subtle.digest('SHA-256', text.encode(value));

  function request(req) {
    return new Promise((resolve, reject) => {
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  function openDb() {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(KEYS);
      req.result.createObjectStore(VALUES);
    };
    return request(req);
  }

  function kv(db, storeName) {
    const run = (mode, op) => request(op(db.transaction(storeName, mode).objectStore(storeName)));
    return {
      get: (key) => run('readonly', (s) => s.get(key)),
      put: (key, value) => run('readwrite', (s) => s.put(value, key)),
      add: (key, value) => run('readwrite', (s) => s.add(value, key)),
      remove: (key) => run('readwrite', (s) => s.delete(key)),
    };
  }

  // The page's key pair: made once, `extractable: false` so exportKey refuses its private
  // half, then stored as CryptoKey objects. Two tabs opening at once both generate; `add`
  // lets only the first write, and the other tab reads the winner's pair.
  async function keyPair(keys) {
    const stored = await keys.get('dpop');
    if (stored) return stored;
    const fresh = await crypto.subtle.generateKey(ALGORITHM, false, ['sign', 'verify']);
    try {
      await keys.add('dpop', fresh);
      return fresh;
    } catch (e) {
      if (e.name !== 'ConstraintError') throw e;
      return keys.get('dpop');
    }
  }

  // A public key is always exportable. Only the members RFC 7638 §3.2 hashes go into the
  // proof header, in the order it hashes them.
  async function publicJwk(publicKey) {
    const { crv, kty, x, y } = await crypto.subtle.exportKey('jwk', publicKey);
    return { crv, kty, x, y };
  }

  async function wantsNonce(response) {
    if (response.status === 401) {
      const challenge = response.headers.get('www-authenticate') || '';
      return /^DPoP\b/i.test(challenge) && /error="use_dpop_nonce"/.test(challenge);
    }
    if (response.status !== 400) return false;
    try {
      return (await response.clone().json()).error === 'use_dpop_nonce';
    } catch (e) {
      return false;
    }
  }

  async function open() {
    const db = await openDb();
    const pair = await keyPair(kv(db, KEYS));
    const jwk = await publicJwk(pair.publicKey);
    const header = { typ: 'dpop+jwt', alg: 'ES256', jwk };
    const nonces = new Map();  // origin -> the last DPoP-Nonce it sent
    const handle = {
      thumbprint: b64u(await sha256(JSON.stringify(jwk))),
      store: kv(db, VALUES),
      nonceRetries: 0,
    };

    // §4.2: htu is the URL without query and fragment; ath hashes the access token.
    async function proof(method, url, accessToken) {
      const claims = {
        jti: crypto.randomUUID(),
        htm: method,
        htu: url.origin + url.pathname,
        iat: Math.floor(Date.now() / 1000),
      };
      const nonce = nonces.get(url.origin);
      if (nonce) claims.nonce = nonce;
      if (accessToken) claims.ath = b64u(await sha256(accessToken));
      const input = `${b64uJson(header)}.${b64uJson(claims)}`;
      return `${input}.${b64u(await crypto.subtle.sign(SIGN, pair.privateKey, text.encode(input)))}`;
    }

    handle.fetch = async (target, init, accessToken) => {
      const url = new URL(target, location.href);
      for (let attempt = 0; ; attempt += 1) {
        const headers = new Headers(init.headers);
        headers.set('dpop', await proof(init.method || 'GET', url, accessToken));
        if (accessToken) headers.set('authorization', `DPoP ${accessToken}`);
        const response = await fetch(url, { ...init, headers });
        const nonce = response.headers.get('dpop-nonce');
        if (nonce) nonces.set(url.origin, nonce);
        if (attempt > 0 || !nonce || !(await wantsNonce(response))) return response;
        handle.nonceRetries += 1;
      }
    };
    return handle;
  }

  window.TokensmithDPoP = { open };
})();
