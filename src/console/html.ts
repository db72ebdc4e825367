// The few server-rendered pages (login, errors, the app shell) and the headers every console
// response carries. Every interpolated value goes through esc(); the app itself builds its DOM
// with textContent only (app.js), so no config or audit text is ever parsed as HTML.

export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Same-origin scripts, styles and fetches only; no inline code, no framing, no plugins. */
export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * The CSP of a page whose forms may end up at another origin: sign-out redirects to the IdP's
 * end_session_endpoint, and browsers apply form-action to a form's redirects too.
 */
export const cspFormTargets = (origins: readonly string[]): string => (origins.length ? CSP.replace("form-action 'self'", `form-action 'self' ${origins.join(' ')}`) : CSP);

export const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // The callback URL carries an authorization code: never leak it (or any page URL) to another
  // origin. (no-referrer would also make browsers send "Origin: null" on form posts.)
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · aam console</title><link rel="icon" href="/console/favicon.svg"><link rel="stylesheet" href="/console/style.css"></head>
<body>${body}</body></html>`;
}

export function loginPage(o: { sso: boolean; token: boolean; error?: string; notice?: string }): string {
  const parts = [`<main class="login"><h1>aam console</h1><p>People see, decide and answer for what agents do.</p>`];
  if (o.notice) parts.push(`<p class="notice" role="status">${esc(o.notice)}</p>`);
  if (o.error) parts.push(`<p class="error" role="alert">${esc(o.error)}</p>`);
  if (o.sso) parts.push('<p><a class="button" href="/console/login">Sign in with single sign-on</a></p>');
  if (o.token) {
    parts.push(`<form method="post" action="/console/token-login"><h2>Break-glass sign-in</h2>
<label for="token">AAM_ADMIN_TOKEN</label> <input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Sign in as admin</button></form>`);
  }
  if (!o.sso && !o.token) parts.push('<p>Sign-in is not configured: set AAM_OIDC_ISSUER, AAM_OIDC_CLIENT_ID, AAM_OIDC_CLIENT_SECRET and AAM_PUBLIC_URL (single sign-on), or AAM_ADMIN_TOKEN (break-glass), and restart aam.</p>');
  parts.push('</main>');
  return layout('Sign in', parts.join('\n'));
}

export function errorPage(title: string, message: string): string {
  return layout(title, `<main class="login"><h1>${esc(title)}</h1><p class="error" role="alert">${esc(message)}</p><p><a href="/console">Back to the console</a></p></main>`);
}

/**
 * The console page. The header says who is signed in and until when (UTC here; the script shows it
 * in the browser's time zone): `until` is when the session ends for good (renewals stop at it).
 */
export function appShell(o: { who: string; role: string; csrf: string; until: number }): string {
  const until = new Date(o.until);
  const hhmm = `${until.toISOString().slice(11, 16)} UTC`;
  return layout('Console', `<a class="skip" href="#main">Skip to content</a><header><a class="brand" href="#/agents">aam</a>
<nav aria-label="Main"><a href="#/agents">Agents</a><a href="#/approvals">Approvals</a><a href="#/simulator">Policy simulator</a><a href="#/audit">Audit</a><a href="#/spend">Spend</a><a href="#/tools">Tools</a></nav>
<span class="who">Signed in as ${esc(o.who)} (${esc(o.role)}) until <time id="session-end" datetime="${until.toISOString()}">${hhmm}</time></span>
<form method="post" action="/console/logout"><input type="hidden" name="csrf" value="${esc(o.csrf)}"><button type="submit">Sign out</button></form></header>
<div id="session-warning"></div>
<main id="main" tabindex="-1"><p>Loading…</p></main>
<script src="/console/app.js"></script>`);
}
