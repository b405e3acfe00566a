// tokensmith SPA example: plain JavaScript, no build step.
//
// - DPoP (RFC 9449): the page holds one ECDSA P-256 key, made non-extractable by
//   WebCrypto and kept in IndexedDB (a CryptoKey is stored as an object, not as bytes),
//   so it survives reloads but no script can read its private half. Every token request
//   and API call carries a fresh proof signed by it (dpop.js), and tokensmith binds the
//   session's tokens to that key: a token copied out of the page is useless elsewhere.
// - The access token lives in this closure only (never localStorage/sessionStorage), so
//   a reload forgets it; the page then restores the session with a silent refresh.
// - Two ways to keep the refresh token (?mode=body picks the second):
//   cookie mode: the __Host- HttpOnly cookie; this script cannot read it and never handles
//     it. `credentials: 'include'` sends it to /token and /logout, which also require our
//     Origin and the CSRF header.
//   body mode: the page keeps it in IndexedDB next to the key. A script can read it, but
//     without the key it refreshes nothing.
// - On a 401 from the API the page refreshes once and retries. Refreshes are
//   single-flight in a tab and take turns across tabs (Web Locks): with rotation and reuse
//   detection, two refreshes with the same token would look like a stolen token.
'use strict';

(() => {
  const CSRF_HEADER = 'x-tokensmith-csrf';
  const FORM = 'application/x-www-form-urlencoded';
  const MODE = new URLSearchParams(location.search).get('mode') === 'body' ? 'body' : 'cookie';
  const state = { config: null, accessToken: null, user: null, refreshes: 0, seq: 0 };
  let refreshing = null;
  let dpop = null;

  const $ = (id) => document.getElementById(id);

  // Display only: the payload of a token the auth server just handed us. The API
  // verifies access tokens; the page never makes a security decision on these claims.
  function payload(jwt) {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  }

  function render() {
    $('mode').textContent = MODE;
    $('status').textContent = state.accessToken ? 'signed-in' : 'signed-out';
    $('user').textContent = state.user || '-';
    $('refresh-count').textContent = String(state.refreshes);
    $('nonce-retries').textContent = String(dpop ? dpop.nonceRetries : 0);
    $('token-exp').textContent = state.accessToken
      ? new Date(payload(state.accessToken).exp * 1000).toISOString()
      : '-';
  }

  function done(error) {
    $('error').textContent = error || '';
    render();
    state.seq += 1;
    $('seq').textContent = String(state.seq);
  }

  async function accept(body) {
    state.accessToken = body.access_token;
    if (body.id_token) state.user = payload(body.id_token).sub;
    if (MODE === 'body' && body.refresh_token) {
      await dpop.store.put('refresh-token', body.refresh_token);
    }
  }

  async function forget() {
    state.accessToken = null;
    state.user = null;
    if (MODE === 'body') await dpop.store.remove('refresh-token');
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return `${response.status} ${body.error || ''} ${body.error_description || body.detail || ''}`.trim();
    } catch (e) {
      return String(response.status);
    }
  }

  // A form POST to the auth server (same origin), with a proof.
  function authPost(path, fields) {
    return dpop.fetch(path, {
      method: 'POST',
      credentials: 'include',
      headers: { [CSRF_HEADER]: '1', 'content-type': FORM },
      body: new URLSearchParams(fields).toString(),
    });
  }

  async function login(username) {
    const response = await authPost('/demo/login', { username, mode: MODE });
    if (!response.ok) throw new Error('login failed: ' + (await errorText(response)));
    await accept(await response.json());
  }

  // The refresh grant's fields: in body mode the page sends its own refresh token.
  async function refreshFields() {
    const fields = { grant_type: 'refresh_token', client_id: state.config.client_id };
    if (MODE === 'body') {
      const token = await dpop.store.get('refresh-token');
      if (!token) return null;
      fields.refresh_token = token;
    }
    return fields;
  }

  // Tabs take turns (Web Locks): each refreshes with the token the previous one left in
  // the cookie or IndexedDB, so tabs opened or woken together never present one token
  // twice (README "Concurrent tabs").
  function oneTabAtATime(work) {
    return navigator.locks ? navigator.locks.request('tokensmith-refresh', work) : work();
  }

  // Resolves true when a new access token is in memory, false when the session is gone.
  function refresh() {
    if (!refreshing) {
      refreshing = oneTabAtATime(async () => {
        const fields = await refreshFields();
        if (fields === null) {
          $('refresh-result').textContent = 'no refresh token';
          await forget();
          return false;
        }
        const response = await authPost('/token', fields);
        if (!response.ok) {
          $('refresh-result').textContent = await errorText(response);
          // A refused token (4xx) ends the session; a server error (5xx) keeps the stored
          // token for the next try.
          if (response.status < 500) await forget();
          return false;
        }
        await accept(await response.json());
        state.refreshes += 1;
        $('refresh-result').textContent = 'ok';
        return true;
      }).finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  function apiGet(path) {
    // No cookies go to the API; the proof names this call and hashes the token (ath).
    return dpop.fetch(state.config.api + path, { method: 'GET' }, state.accessToken);
  }

  async function callApi() {
    const trace = [];
    if (!state.accessToken) {
      trace.push('refresh');
      if (!(await refresh())) {
        $('api-status').textContent = 'signed-out';
        $('api-trace').textContent = trace.join(' ');
        return;
      }
    }
    let response = await apiGet('/api/me');
    trace.push(String(response.status));
    if (response.status === 401) {
      trace.push('refresh');
      if (await refresh()) {
        response = await apiGet('/api/me');
        trace.push(String(response.status));
      }
    }
    $('api-status').textContent = String(response.status);
    $('api-trace').textContent = trace.join(' ');
    $('api-result').textContent = response.ok
      ? JSON.stringify(await response.json(), null, 2)
      : await errorText(response);
  }

  async function logout() {
    // Cookie mode: /logout revokes the cookie's session and expires the cookie. Body mode:
    // RFC 7009 revocation of the page's own refresh token, which ends the session too.
    const fields = { client_id: state.config.client_id };
    let path = '/logout';
    if (MODE === 'body') {
      path = '/revoke';
      fields.token = (await dpop.store.get('refresh-token')) || '';
    }
    const response = await authPost(path, fields);
    await forget();
    $('api-result').textContent = '';
    if (!response.ok) throw new Error('logout failed: ' + (await errorText(response)));
  }

  // -- "Your sessions" panel: GET /sessions and POST /sessions/revoke-others on the auth
  // server, authenticated by the access token (its sid is this tab's session). -----------
  async function sessionsFetch(path, method) {
    if (!state.accessToken && !(await refresh())) throw new Error('signed out');
    // A DPoP-bound token goes with a proof for this call (RFC 9449 §7), like any API call.
    const send = () => dpop.fetch(path, { method }, state.accessToken);
    let response = await send();
    if (response.status === 401 && (await refresh())) response = await send();
    if (!response.ok) throw new Error(path + ': ' + (await errorText(response)));
    return response.json();
  }

  async function listSessions() {
    const { sessions } = await sessionsFetch('/sessions', 'GET');
    const list = $('sessions');
    list.replaceChildren(...sessions.map((s) => {
      const item = document.createElement('li');
      item.dataset.sid = s.sid;
      item.dataset.current = String(s.current);
      const when = new Date(s.last_used_at * 1000).toISOString();
      item.textContent = `${s.client_id} · last used ${when} · ${s.ip || '-'} · ` +
        `${s.user_agent || '-'}${s.current ? ' (this session)' : ''}`;
      return item;
    }));
  }

  async function revokeOtherSessions() {
    await sessionsFetch('/sessions/revoke-others', 'POST');
    await listSessions();
  }

  function action(fn) {
    return async (event) => {
      if (event) event.preventDefault();
      try {
        await fn();
        done('');
      } catch (e) {
        done(e.message || String(e));
      }
    };
  }

  async function start() {
    dpop = await window.TokensmithDPoP.open();
    $('jkt').textContent = dpop.thumbprint;
    const response = await fetch('/demo/config?mode=' + MODE);
    state.config = await response.json();
    $('login-form').addEventListener('submit', action(() => login($('username').value)));
    $('call-api').addEventListener('click', action(callApi));
    $('refresh').addEventListener('click', action(refresh));
    $('logout').addEventListener('click', action(logout));
    $('list-sessions').addEventListener('click', action(listSessions));
    $('revoke-others').addEventListener('click', action(revokeOtherSessions));
    await refresh();  // restore a session kept in the cookie or in IndexedDB (a reload)
  }

  action(start)();
})();
