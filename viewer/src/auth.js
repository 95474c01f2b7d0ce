// Bearer token handling: from `#token=...` (what `tessel demo` prints), the sign-in form,
// or a token pasted from `tessel token create`. Kept in localStorage until it expires.

const KEY = 'tessel.token';

function claims(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}

export function tokenExpiry(token) {
  const c = claims(token);
  return c && c.exp ? c.exp * 1000 : null;
}

export function getToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    setToken(fromHash);
    history.replaceState(null, '', location.pathname + location.search); // keep it out of history
  }
  const token = localStorage.getItem(KEY);
  if (!token) return null;
  const expiry = tokenExpiry(token);
  if (expiry !== null && expiry < Date.now()) {
    localStorage.removeItem(KEY);
    return null;
  }
  return token;
}

export function setToken(token) {
  localStorage.setItem(KEY, token.trim());
}

export function signOut() {
  localStorage.removeItem(KEY);
}

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Exchange an access key id and secret for a token (POST /viewer/api/token). */
export async function signIn(keyId, secret, ttl = '8h') {
  const response = await fetch('/viewer/api/token', {
    method: 'POST',
    headers: { Authorization: `Basic ${btoa(`${keyId}:${secret}`)}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ ttl }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `sign-in failed (${response.status})`);
  setToken(body.token);
  return body;
}

/** Pages other than the browser send the user to sign in (and back) when there is no token. */
export function requireToken() {
  const token = getToken();
  if (!token) {
    const back = encodeURIComponent(location.pathname + location.search);
    location.replace(`/viewer/?next=${back}`);
    throw new Error('not signed in');
  }
  return token;
}
