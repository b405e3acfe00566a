// tokensmith SPA example: plain JavaScript, no build step.
//
// - The access token lives in this closure only (never localStorage/sessionStorage), so
//   a reload forgets it; the page then restores the session with a silent refresh.
// - The refresh token is in the __Host- HttpOnly cookie: this script cannot read it and
//   never handles it. `credentials: 'include'` lets the browser send it to /token and
//   /logout, which also require our Origin and the CSRF header.
// - On a 401 from the API the page refreshes once and retries. Refreshes are
//   single-flight: with rotation and reuse detection, two concurrent refreshes with the
//   same cookie would look like a stolen token and end the session.
'use strict';

(() => {
  const CSRF_HEADER = 'x-tokensmith-csrf';
  const FORM = 'application/x-www-form-urlencoded';
  const state = { config: null, accessToken: null, user: null, refreshes: 0, seq: 0 };
  let refreshing = null;

  const $ = (id) => document.getElementById(id);

  // Display only: the payload of a token the auth server just handed us. The API
  // verifies access tokens; the page never makes a security decision on these claims.
  function payload(jwt) {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  }

  function render() {
    $('status').textContent = state.accessToken ? 'signed-in' : 'signed-out';
    $('user').textContent = state.user || '-';
    $('refresh-count').textContent = String(state.refreshes);
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

  function accept(body) {
    state.accessToken = body.access_token;
    if (body.id_token) state.user = payload(body.id_token).sub;
  }

  function forget() {
    state.accessToken = null;
    state.user = null;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return `${response.status} ${body.error || ''} ${body.error_description || body.detail || ''}`.trim();
    } catch (e) {
      return String(response.status);
    }
  }

  function authPost(path, fields) {
    return fetch(path, {
      method: 'POST',
      credentials: 'include',
      headers: { [CSRF_HEADER]: '1', 'content-type': FORM },
      body: new URLSearchParams(fields).toString(),
    });
  }

  async function login(username) {
    const response = await authPost('/demo/login', { username });
    if (!response.ok) throw new Error('login failed: ' + (await errorText(response)));
    accept(await response.json());
  }

  // Resolves true when a new access token is in memory, false when the session is gone.
  function refresh() {
    if (!refreshing) {
      refreshing = (async () => {
        const response = await authPost('/token', {
          grant_type: 'refresh_token',
          client_id: state.config.client_id,
        });
        if (!response.ok) {
          $('refresh-result').textContent = await errorText(response);
          forget();
          return false;
        }
        accept(await response.json());
        state.refreshes += 1;
        $('refresh-result').textContent = 'ok';
        return true;
      })().finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  function apiGet(path) {
    const headers = state.accessToken ? { authorization: 'Bearer ' + state.accessToken } : {};
    return fetch(state.config.api + path, { headers });  // no cookies go to the API
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
    const response = await authPost('/logout', { client_id: state.config.client_id });
    forget();
    $('api-result').textContent = '';
    if (!response.ok) throw new Error('logout failed: ' + (await errorText(response)));
  }

  // -- "Your sessions" panel: GET /sessions and POST /sessions/revoke-others on the auth
  // server, authenticated by the access token (its sid is this tab's session). -----------
  async function sessionsFetch(path, method) {
    if (!state.accessToken && !(await refresh())) throw new Error('signed out');
    const send = () => fetch(path, {
      method, headers: { authorization: 'Bearer ' + state.accessToken },
    });
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
    const response = await fetch('/demo/config');
    state.config = await response.json();
    $('login-form').addEventListener('submit', action(() => login($('username').value)));
    $('call-api').addEventListener('click', action(callApi));
    $('refresh').addEventListener('click', action(refresh));
    $('logout').addEventListener('click', action(logout));
    $('list-sessions').addEventListener('click', action(listSessions));
    $('revoke-others').addEventListener('click', action(revokeOtherSessions));
    await refresh();  // restore a session kept in the cookie (after a reload)
  }

  action(start)();
})();
