// aam console: a small dependency-free page over the admin API (no build step). The DOM is built
// with textContent only — never innerHTML — so agent names, arguments and audit text cannot run
// as markup. Every change is a fetch with the session's CSRF token; the server checks roles.
'use strict';

const main = document.getElementById('main');
let me = { role: 'viewer', csrf_token: null };
const RANK = { viewer: 0, approver: 1, operator: 2, admin: 3 };
const can = (role) => RANK[me.role] >= RANK[role];

/** el('tag', { attr: value, onclick: fn }, ...children): children are nodes or text. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** Navigations so far (route): a page load that a later one overtook is dropped, not shown over the newer page. */
let navigation = 0;
class Superseded extends Error {}
/** The session ended while the page was open (expired, signed out in another tab, or a restart ended a break-glass one). */
class SignedOut extends Error {}
const signedOut = () => el('p', { class: 'error', role: 'alert' }, 'Your console session has ended (it expired, or you signed out elsewhere). ',
  el('a', { href: '/console' }, 'Sign in again'), '.');

async function api(method, path, body) {
  const at = navigation;
  const headers = { accept: 'application/json' };
  if (method !== 'GET') { headers['content-type'] = 'application/json'; headers['x-csrf-token'] = me.csrf_token || ''; }
  const r = await fetch(`/admin/v1${path}`, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  // Past the ID token of a session without a refresh token: loading the page again re-authorizes it
  // at the IdP by redirect, without a form while the person is signed in there (a change is not
  // resent: the person is told, and tries again after). Not twice within a minute (no reload loop).
  if (r.status === 401 && data.error && data.error.code === 'reauthorization_required') {
    const last = Number(sessionStorage.getItem('aam-reauthorized') || 0);
    if (method === 'GET' && Date.now() - last > 60_000) {
      sessionStorage.setItem('aam-reauthorized', String(Date.now()));
      location.reload();
      return new Promise(() => {}); // the page goes away
    }
    throw new Error(data.error.message);
  }
  // The API's 401 speaks to scripts (which header to send); a person is told to sign in again.
  if (r.status === 401) throw new SignedOut((data.error && data.error.message) || 'HTTP 401');
  if (!r.ok) throw new Error((data.error && data.error.message) || `${method} ${path}: HTTP ${r.status}`);
  // e.g. an unfiltered audit list answering after the filtered search the user made meanwhile.
  if (method === 'GET' && at !== navigation) throw new Superseded(path);
  return data;
}

function table(headers, rows) {
  return el('table', {}, el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.length ? rows.map((r) => el('tr', {}, r.map((c) => el('td', {}, c)))) : el('tr', {}, el('td', { colspan: headers.length }, 'none'))));
}

const usd = (n) => (typeof n === 'number' ? `$${n.toFixed(2)}` : '-');
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '-');
const effectBadge = (effect) => el('span', { class: `badge ${effect}` }, effect);

function show(title, ...content) {
  main.replaceChildren(el('h1', {}, title), ...content);
  document.title = `${title} · aam console`;
  main.focus();
}

function notice(text, kind) { return el('p', { class: kind || 'notice', role: kind === 'error' ? 'alert' : 'status' }, text); }

/** Run an action from a button, showing its outcome in `out`. */
function action(out, fn) {
  return async (ev) => {
    ev.preventDefault();
    out.replaceChildren(notice('Working…'));
    try { await fn(); } catch (e) { out.replaceChildren(e instanceof SignedOut ? signedOut() : notice(e.message, 'error')); }
  };
}

/**
 * An action that cannot be undone asks first, in `out`: the confirm button does it, Cancel (focused,
 * so Enter does no harm) does not and hands the focus back to the button that asked (`opener`).
 */
function confirmIn(out, opener, question, label, fn) {
  const cancel = el('button', { type: 'button', onclick: () => { out.replaceChildren(); opener.focus(); } }, 'Cancel');
  out.replaceChildren(el('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm' }, el('p', {}, question),
    el('button', { type: 'button', class: 'danger', onclick: action(out, fn) }, label), ' ', cancel));
  cancel.focus();
}

const METHOD_NAMES = { virtual_key: 'virtual key', jwt_svid: 'JWT-SVID', x509_svid: 'X.509-SVID', delegation: 'A2A delegation', on_behalf_of: 'on-behalf-of' };
/** "virtual key (last 5/12/2026, 10:00:00), JWT-SVID (…)": the ways an agent proved who it is, newest first. */
function methodsText(m) {
  if (m === null) return 'unavailable (store not answering)';
  const seen = Object.entries(m).sort((a, b) => b[1].localeCompare(a[1]));
  return seen.length ? seen.map(([k, t]) => `${METHOD_NAMES[k] || k} (last ${when(t)})`).join(', ') : 'none yet';
}

const PLANE_NAMES = { model: 'model', tool: 'tools', a2a: 'A2A' };
/** "5/12/2026, 10:00:00 (tools)": the agent's newest event on any plane, and which plane. */
function activityText(l) {
  if (!l || !l.at) return '-';
  const plane = Object.keys(PLANE_NAMES).find((p) => l[p] === l.at);
  return `${when(l.at)}${plane ? ` (${PLANE_NAMES[plane]})` : ''}`;
}

async function agentsPage() {
  const { data } = await api('GET', '/agents');
  show('Agents', table(['Agent', 'Owner', 'Team', 'Environment', 'Deployment', 'Identity methods seen', 'Active keys', 'Spend (30 days)', 'Budgets (spent / limit)', 'Last activity'],
    data.map((a) => [
      el('a', { href: `#/agents/${encodeURIComponent(a.name)}` }, a.name), a.owner || '-', a.team || '-', a.environment || '-', a.deployment || '-',
      methodsText(a.identity_methods), String(a.keys.filter((k) => !k.revoked_at).length),
      a.usage_30d ? `${usd(a.usage_30d.cost_usd)} in ${a.usage_30d.requests} requests${a.usage_30d.unknown_cost_requests ? ` (+${a.usage_30d.unknown_cost_requests} of unknown cost)` : ''}` : '-',
      a.budgets.length ? a.budgets.map((b) => `${b.key}: ${b.daily_usd !== null ? `${usd(b.spent.daily)} / ${usd(b.daily_usd)} a day` : ''}${b.monthly_usd !== null ? ` ${usd(b.spent.monthly)} / ${usd(b.monthly_usd)} a month` : ''}`).join('; ') : 'no budget',
      activityText(a.last_activity),
    ])));
}

async function agentPage(name, flash) {
  const [{ data }, detail] = await Promise.all([api('GET', '/agents'), api('GET', `/agents/${encodeURIComponent(name)}`)]);
  const a = data.find((x) => x.name === name);
  const out = el('div', { 'aria-live': 'polite' });
  const keyRows = a.keys.map((k) => [k.id, k.name || '-', when(k.created_at), k.revoked_at ? `revoked ${when(k.revoked_at)}` : 'active', when(k.last_rotated_at),
    k.revoked_at || !can('operator') ? '' : el('span', {},
      graceChoice(k.id), ' ',
      el('button', { type: 'button', onclick: action(out, async () => {
        const grace = Number(document.getElementById(`grace-${k.id}`).value);
        const r = await api('POST', `/keys/${k.id}/rotate`, { grace_seconds: grace });
        await agentPage(name, { secret: r.key, text: `Rotated. ${graceText(r.previous_valid_for_seconds)}` });
      }) }, 'Rotate'), ' ',
      el('button', { type: 'button', class: 'danger', onclick: (ev) => confirmIn(out, ev.currentTarget, `Revoke key ${k.id}${k.name ? ` (${k.name})` : ''}? Every agent using it is refused (401) at once; this cannot be undone.`, `Revoke ${k.id}`,
        async () => { await api('POST', `/keys/${k.id}/revoke`); await agentPage(name, { text: `Key ${k.id} revoked.` }); }) }, 'Revoke'))]);
  const create = can('operator') ? el('form', { onsubmit: action(out, async () => { const r = await api('POST', '/keys', { agent: name, name: create.elements.keyname.value || undefined }); await agentPage(name, { secret: r.key, text: `Key ${r.id} created.` }); }) },
    el('label', { for: 'keyname' }, 'New key name '), el('input', { id: 'keyname', name: 'keyname', autocomplete: 'off', maxlength: '100' }), ' ', el('button', { type: 'submit' }, 'Create key')) : null;
  show(`Agent ${name}`,
    el('dl', {}, [['SPIFFE ID', a.spiffe_id], ['Owner', a.owner], ['Team', a.team], ['Environment', a.environment], ['Deployment', a.deployment], ['Identity methods seen', methodsText(a.identity_methods)], ['Policies', a.policies.join(', ') || 'none']]
      .flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v || '-')])),
    el('h2', {}, 'Keys'), table(['Key id', 'Name', 'Created', 'Status', 'Last rotated', ''], keyRows), create, out,
    el('h2', {}, 'What can this agent do?'),
    el('h3', {}, 'Models'), table(['Model', 'Decision', 'Policy', 'Rule', 'Why'], detail.models.map((m) => [m.model, effectBadge(m.effect), m.policy || '(default deny)', m.rule || '-', m.reason])),
    el('h3', {}, 'Tools'), table(['Resource', 'Action', 'Known from', 'Decision', 'Policy', 'Rule', 'Why'], detail.tools.map((t) => [t.resource, t.action, t.via,
      el('span', {}, effectBadge(t.effect), t.conditional ? ' (depends on arguments)' : ''), t.policy || '(default deny)', t.rule || '-', t.reason])));
  if (flash && flash.secret) showSecret(out, flash.secret, flash.text);
  else if (flash) out.replaceChildren(notice(flash.text));
}

/** How long a rotated-out secret keeps working: the admin API's grace_seconds (it checks the value, as the CLI's --grace). */
const GRACES = [[0, 'no time: it stops at once'], [300, '5 minutes'], [3600, '1 hour'], [86400, '1 day'], [604800, '7 days']];
function graceChoice(keyId) {
  return el('span', {}, el('label', { for: `grace-${keyId}` }, 'Old secret works for '),
    el('select', { id: `grace-${keyId}` }, GRACES.map(([v, text]) => el('option', { value: v, selected: v === 3600 }, text))));
}
function graceText(s) {
  if (s === 0) return 'The old secret no longer works.';
  const g = GRACES.find(([v]) => v === s);
  return `The old secret keeps working for ${g ? g[1] : `${s} seconds`}.`;
}

/** A new key secret is shown once, here, and never again. */
function showSecret(out, secret, text) {
  out.replaceChildren(el('div', { class: 'secret', role: 'status' }, el('p', {}, `${text} Copy the key now: it is not shown again.`), el('code', {}, secret)));
}

/** Arguments as recorded for review (PII redacted, credentials scrubbed by aam), and their digest. */
function argsCell(a) {
  let text = a.argsForReview;
  try { if (text) text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* clipped: show as recorded */ }
  return el('div', { class: 'args' }, text ? el('pre', {}, text) : el('p', {}, 'not recorded'), el('code', { title: 'argument digest' }, a.argsDigest));
}

async function approvalsPage() {
  const { data } = await api('GET', '/approvals?status=pending');
  const out = el('div', { 'aria-live': 'polite' });
  const rows = data.map((a) => {
    const reason = el('input', { 'aria-label': `Reason for ${a.id}`, placeholder: 'reason (recorded)', autocomplete: 'off' });
    const decideBtn = (verb, label, cls) => el('button', { type: 'button', class: cls, onclick: action(out, async () => {
      if (!reason.value.trim()) throw new Error('give a reason: it is recorded in the audit trail with your name');
      await api('POST', `/approvals/${a.id}/${verb}`, { reason: reason.value.trim() });
      await approvalsPage();
      main.append(notice(`${label}: ${a.id}`));
    }) }, label);
    return [a.id, a.agent, `${a.plane} ${a.target}`, `${a.action} on ${a.resource}`, argsCell(a), `${a.policy} tools[${a.rule}]: ${a.reason}`, when(a.createdAt), when(a.expiresAt),
      can('approver') ? el('div', { class: 'decide' }, reason, el('span', {}, decideBtn('approve', 'Approve'), ' ', decideBtn('reject', 'Reject', 'danger'))) : 'approver role needed'];
  });
  show('Approvals', el('p', {}, 'Tool calls held by a rule with approval: required. Approving lets the same call (same agent, tool and arguments) through once.'),
    table(['Id', 'Agent', 'Tool', 'Action', 'Arguments (redacted)', 'Held by', 'Asked', 'Expires', 'Decision'], rows), out);
}

async function simulatorPage() {
  const { data } = await api('GET', '/agents');
  const out = el('div', { 'aria-live': 'polite' });
  const f = el('form', {},
    el('p', {}, el('label', { for: 'sim-agent' }, 'Agent '), el('select', { id: 'sim-agent', name: 'agent' }, data.map((a) => el('option', { value: a.name }, a.name)))),
    el('fieldset', {}, el('legend', {}, 'Request'),
      el('p', {}, el('label', { for: 'sim-model' }, 'Model '), el('input', { id: 'sim-model', name: 'model', placeholder: 'e.g. reasoning-high', autocomplete: 'off' })),
      el('p', {}, 'or a tool action: ', el('label', { for: 'sim-resource' }, 'Resource '), el('input', { id: 'sim-resource', name: 'resource', autocomplete: 'off' }), ' ',
        el('label', { for: 'sim-action' }, 'Action '), el('input', { id: 'sim-action', name: 'action', autocomplete: 'off' })),
      el('p', {}, el('label', { for: 'sim-args' }, 'Arguments (JSON) '), el('textarea', { id: 'sim-args', name: 'args', rows: 3, cols: 60 }, '{}'))),
    el('button', { type: 'submit' }, 'Decide'));
  f.addEventListener('submit', action(out, async () => {
    const v = (n) => f.elements[n].value.trim();
    const body = { agent: v('agent') };
    if (v('model')) body.model = v('model');
    else {
      body.resource = v('resource'); body.action = v('action');
      try { body.args = JSON.parse(v('args') || '{}'); } catch { throw new Error('arguments must be a JSON object'); }
    }
    const r = await api('POST', '/policy/explain', body);
    out.replaceChildren(el('h2', {}, 'Decision: ', effectBadge(r.decision.effect)), el('p', {}, r.decision.reason), el('pre', {}, r.explanation.join('\n')));
  }));
  show('Policy simulator', el('p', {}, 'Pick an agent and a request to see what the policy decides and why (like aam policy explain).'), f, out);
}

/** The audit query's filters (the live tail takes all but one request or trace). */
const TAIL_FILTERS = ['agent', 'team', 'decision', 'type', 'plane'];
const AUDIT_FILTERS = [...TAIL_FILTERS, 'since', 'request_id', 'trace_id'];

async function auditPage(params) {
  const q = new URLSearchParams(params);
  const f = el('form', { class: 'filters' },
    ...[['agent', 'Agent'], ['team', 'Team'], ['type', 'Event type'], ['since', 'Since (e.g. 24h)'], ['request_id', 'Request id'], ['trace_id', 'Trace id']].map(([n, label]) =>
      el('span', {}, el('label', { for: `f-${n}` }, `${label} `), el('input', { id: `f-${n}`, name: n, value: q.get(n) || '', autocomplete: 'off' }), ' ')),
    // Closed lists are choices, not free text (a typo would only be refused after Search).
    ...[['decision', 'Decision', [['', 'any'], ['allow', 'allow'], ['deny', 'deny'], ['approval_required', 'approval required']]],
      ['plane', 'Plane', [['', 'any'], ['model', 'model'], ['tool', 'tools'], ['a2a', 'A2A'], ['admin', 'admin']]]].map(([n, label, options]) =>
      el('span', {}, el('label', { for: `f-${n}` }, `${label} `), el('select', { id: `f-${n}`, name: n },
        ...options.map(([v, text]) => el('option', { value: v, selected: (q.get(n) || '') === v }, text))), ' ')),
    el('button', { type: 'submit' }, 'Search'));
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const n of AUDIT_FILTERS) if (f.elements[n].value.trim()) p.set(n, f.elements[n].value.trim());
    location.hash = `#/audit?${p}`;
  });
  q.set('limit', '100');
  const answer = await orRefused(api('GET', `/audit?${q}`), (why) => show('Audit', f, why));
  if (!answer) return;
  const { data, next_before: older } = answer;
  const cells = (e) => [String(e.seq), when(e.time), e.type,
    e.identity ? e.identity.agent : typeof e.agent === 'string' ? e.agent : e.admin ? actorText(e.admin.actor) : '-',
    e.policy ? effectBadge(e.policy.decision) : '-', whatText(e),
    el('a', { href: `#/audit/${encodeURIComponent(e.request_id)}` }, e.request_id)];
  const t = table(['#', 'Time', 'Type', 'Agent / actor', 'Decision', 'What', 'Request'], data.map(cells));
  const status = el('span', { role: 'status' }, '');
  const live = el('button', { type: 'button', 'aria-pressed': 'false', onclick: () => {
    if (tail) { stopTail(); live.setAttribute('aria-pressed', 'false'); status.textContent = ''; return; }
    const p = new URLSearchParams();
    for (const n of TAIL_FILTERS) if (q.get(n)) p.set(n, q.get(n));
    tail = new EventSource(`/admin/v1/audit/stream?${p}`);
    live.setAttribute('aria-pressed', 'true');
    status.textContent = ' connecting…';
    // Open = the server has fixed where the tail starts: everything after this is shown.
    tail.onopen = () => { status.textContent = ' following new events…'; };
    tail.addEventListener('audit', (ev) => {
      const body = t.querySelector('tbody');
      if (body.querySelector('td[colspan]')) body.replaceChildren();
      body.prepend(el('tr', { class: 'new' }, cells(JSON.parse(ev.data)).map((c) => el('td', {}, c))));
    });
    // The server ends a tail whose reader may no longer read the trail (signed out, expired, role removed).
    tail.addEventListener('ended', (ev) => {
      const why = JSON.parse(ev.data);
      stopTail();
      live.setAttribute('aria-pressed', 'false');
      status.textContent = '';
      // renewal_due: the session is live but its sign-in must be renewed, which only the person's own request does.
      main.prepend(why.status === 401 && why.code !== 'renewal_due' ? signedOut() : notice(`The live tail stopped: ${why.message}`, 'error'));
    });
    // A refused reconnect (401/403, e.g. after a restart) closes the EventSource for good: say so.
    tail.onerror = () => {
      if (tail && tail.readyState === EventSource.CLOSED) { stopTail(); live.setAttribute('aria-pressed', 'false'); status.textContent = ' live tail stopped; reload the page to follow again.'; }
      else status.textContent = ' live tail interrupted; retrying…';
    };
  } }, 'Live tail');
  // Pages of 100, newest first: older ones by the answer's cursor, with the same filters.
  const pageLink = (before, label) => {
    const p = new URLSearchParams(params);
    p.delete('before');
    if (before) p.set('before', before);
    return el('a', { href: `#/audit?${p}` }, label);
  };
  const paging = el('p', { class: 'paging' }, q.get('before') ? pageLink(null, 'Newest events') : null, q.get('before') && older ? ' · ' : null,
    older ? pageLink(older, 'Older events') : null);
  show('Audit', f, el('p', {}, live, status), t, paging);
}

/** A page's query refused (a bad filter): the page keeps its form and says why under it (`showWith(notice)`), rather than leaving for an error page. */
async function orRefused(promise, showWith) {
  try { return await promise; } catch (e) {
    if (e instanceof SignedOut || e instanceof Superseded) throw e;
    showWith(notice(e.message, 'error'));
    return null;
  }
}

/** The audit page's live tail (server-sent events); closed when the page changes. */
let tail = null;
function stopTail() { if (tail) { tail.close(); tail = null; } }

const actorText = (a) => (typeof a === 'string' ? a : `${a.email || a.sub}`);
function whatText(e) {
  if (e.type === 'evidence_refused') return `${e.answered === 'stream_cut' ? 'stream cut' : `answered ${e.outcome ? e.outcome.status : 503}`}: evidence not durable (amends ${e.amends || 'the call'})`;
  if (e.model) return `model ${e.model.route}${e.model.provider ? ` via ${e.model.provider}` : ''}`;
  // Tool-plane events name the tool flat (tool/server, action, resource); other events nest it.
  if (typeof e.tool === 'string' || typeof e.server === 'string') return `tool ${e.server || e.tool} ${e.action || ''} ${e.resource || ''}`.trim();
  if (e.tool) return `tool ${e.tool.server ? `${e.tool.server}/${e.tool.tool}` : `${e.tool.action} ${e.tool.resource}`}`;
  if (e.a2a) return `A2A ${e.a2a.agent}${e.a2a.skill ? ` skill ${e.a2a.skill}` : ''}`;
  if (e.admin) return `${e.admin.action} ${e.admin.target || ''}`;
  return '';
}

/** The upstream call an event records (model provider and cost, or tool server), if any. */
function upstreamText(e) {
  const m = e.model;
  if (m && m.provider) return `${m.provider}/${m.model} for route ${m.route}, ${m.input_tokens ?? '?'} in / ${m.output_tokens ?? '?'} out tokens, cost ${typeof m.cost_usd === 'number' ? usd(m.cost_usd) : 'unknown'}${m.latency_ms !== undefined ? `, ${Math.round(m.latency_ms)} ms` : ''}${m.cache === 'hit' ? ' (from cache)' : ''}`;
  if (e.tool && e.tool.server && e.type === 'tool_call') return `tool ${e.tool.server}/${e.tool.tool}`;
  return '';
}

async function requestPage(id) {
  const { data, checkpoint: c } = await api('GET', `/audit/requests/${encodeURIComponent(id)}`);
  const lastSeq = Math.max(...data.map((e) => e.seq));
  const proof = !c ? 'No signed checkpoint yet.'
    : `Latest signed checkpoint: ${c.tree_size} events at ${when(c.time)} (${c.type}, key ${c.key_id}), signature ${c.signature_valid === true ? 'valid' : c.signature_valid === false ? 'INVALID' : 'not checkable here'}; `
      + (data.length && lastSeq <= c.tree_size ? 'this request\'s events are covered by it.' : 'this request\'s newest events come after it (the next checkpoint will cover them).')
      + ' aam audit verify proves the whole trail.';
  show(`Request ${id}`, el('p', {}, 'Identity → policy and rule → credential → upstream call → outcome, in the order the trail recorded them.'), el('p', { class: 'proof' }, proof),
    el('ol', { class: 'chain' }, data.map((e) => el('li', {},
      el('h2', {}, `#${e.seq} ${e.type}`),
      e.identity ? el('p', {}, `Identity: ${e.identity.agent} (${e.identity.spiffe_id}, ${e.identity.method}${e.identity.key_id ? ` key ${e.identity.key_id}` : ''})`) : null,
      e.policy ? el('p', {}, 'Policy: ', effectBadge(e.policy.decision), ` ${e.policy.name || '(default deny)'} rule ${e.policy.rule}: ${e.policy.reason}`) : null,
      e.credential ? el('p', {}, `Credential: ${e.credential.name}${e.credential.version ? ` version ${e.credential.version}` : ''}`) : null,
      upstreamText(e) ? el('p', {}, `Upstream call: ${upstreamText(e)}`) : null,
      e.guardrail ? el('p', {}, `Guardrail verdict: ${e.guardrail.verdict} on ${e.guardrail.direction} ${e.guardrail.where}${(e.guardrail.findings || []).length ? ` (${e.guardrail.findings.map((f) => `${f.guardrail}: ${f.category} x${f.count}`).join(', ')})` : ''}`) : null,
      // evidence_refused: the call above was written, then its evidence not made durable (audit/event.ts unacknowledgedText says the same).
      e.type === 'evidence_refused' ? el('p', { class: 'refused' }, e.answered === 'stream_cut'
        ? `Stream cut: the 200 head was sent, then an error event (counted ${e.outcome ? e.outcome.status : 503}): evidence not durable, the ${e.amends || 'call'} above was not acknowledged.`
        : `Answered ${e.outcome ? e.outcome.status : 503}: evidence not durable, the ${e.amends || 'call'} above was not acknowledged.`) : null,
      e.outcome ? el('p', {}, `Outcome: ${e.outcome.status}${e.outcome.error_class ? ` ${e.outcome.error_class}` : ''}`) : null,
      el('details', {}, el('summary', {}, 'Event as recorded'), el('pre', {}, JSON.stringify(e, null, 2)))))));
}

async function toolsPage() {
  const [status, flagged, config, agents] = await Promise.all([api('GET', '/mcp/status').catch(() => ({})), api('GET', '/tools/flagged').catch(() => ({ data: [] })), api('GET', '/config'), api('GET', '/agents')]);
  // Who may call what: each agent's decided capabilities, folded by tool action.
  const byTool = new Map();
  for (const a of await Promise.all(agents.data.map((x) => api('GET', `/agents/${encodeURIComponent(x.name)}`)))) {
    for (const t of a.tools) {
      const k = `${t.resource} ${t.action}`;
      if (!byTool.has(k)) byTool.set(k, { resource: t.resource, action: t.action, via: t.via, allow: [], approval: [] });
      if (t.effect === 'allow') byTool.get(k).allow.push(a.agent.name + (t.conditional ? ' (conditional)' : ''));
      if (t.effect === 'approval_required') byTool.get(k).approval.push(a.agent.name);
    }
  }
  const out = el('div', { 'aria-live': 'polite' });
  const side = (t) => el('pre', {}, t ? JSON.stringify(t, null, 2) : '(none)');
  const flaggedRows = flagged.data.map((d) => [`${d.server}/${d.tool}`, d.status, d.changed.join(', ') || '-', side(d.accepted), side(d.current),
    can('operator') ? el('button', { type: 'button', onclick: action(out, async () => {
      await api('POST', `/tools/${encodeURIComponent(d.server)}/${encodeURIComponent(d.tool)}/accept`);
      await toolsPage();
      main.append(notice(`Accepted the current definition of ${d.server}/${d.tool}.`));
    }) }, 'Accept') : 'operator role needed']);
  show('Tools',
    el('h2', {}, 'MCP servers'), table(['Server', 'State', 'Tools', 'Restarts', 'Last error'], Object.entries(status).map(([name, st]) => [name, st.state, String(st.tools), String(st.restarts), st.lastError || '-'])),
    el('h2', {}, 'Changed tool definitions'),
    el('p', {}, 'A tool whose definition changed since it was accepted is withheld from agents until someone accepts the new one.'),
    table(['Tool', 'Status', 'Changed fields', 'Accepted', 'Current', ''], flaggedRows), out,
    el('h2', {}, 'Who may call each tool'),
    table(['Resource', 'Action', 'Known from', 'Allowed', 'With approval'], [...byTool.values()].map((t) => [t.resource, t.action, t.via, t.allow.join(', ') || 'nobody', t.approval.join(', ') || '-'])),
    el('h2', {}, 'Providers and model routes'),
    table(['Provider', 'Type', 'Enabled'], config.providers.map((p) => [p.name, p.type, p.enabled ? 'yes' : `no (${p.reason || 'off'})`])),
    table(['Route', 'Strategy', 'Targets'], config.models.map((m) => [m.name, m.strategy || '-', m.targets.map((t) => `${t.target}${t.enabled ? '' : ' (off)'} [${t.breaker}]`).join(', ')])));
}

async function spendPage(params) {
  const since = new URLSearchParams(params).get('since') || '30d';
  const f = el('form', { class: 'filters' }, el('label', { for: 'sp-since' }, 'Since '), el('input', { id: 'sp-since', name: 'since', value: since, autocomplete: 'off' }), ' ', el('button', { type: 'submit' }, 'Show'));
  f.addEventListener('submit', (ev) => { ev.preventDefault(); location.hash = `#/spend?since=${encodeURIComponent(f.elements.since.value.trim())}`; });
  const by = ['agent', 'team', 'model', 'route', 'key'];
  const all = await orRefused(Promise.all([api('GET', '/agents'), api('GET', `/usage/daily?by=agent&since=${encodeURIComponent(since)}`), ...by.map((b) => api('GET', `/usage?by=${b}&since=${encodeURIComponent(since)}`))]), (why) => show('Spend', f, why));
  if (!all) return;
  const [agents, daily, ...usage] = all;
  const max = Math.max(0.000001, ...usage[0].data.map((r) => r.cost_usd || 0));
  const bar = (v, limit) => el('span', { class: 'bar', role: 'img', 'aria-label': `${Math.round((100 * v) / limit)}%` }, el('span', { class: `fill${v >= limit ? ' over' : ''}`, style: null, 'data-pct': String(Math.min(100, Math.round((100 * v) / limit))) }));
  const burn = agents.data.flatMap((a) => a.budgets.flatMap((b) => [
    ...(b.daily_usd !== null ? [[a.name, b.key, 'day', usd(b.spent.daily), usd(b.daily_usd), bar(b.spent.daily, b.daily_usd)]] : []),
    ...(b.monthly_usd !== null ? [[a.name, b.key, 'month', usd(b.spent.monthly), usd(b.monthly_usd), bar(b.spent.monthly, b.monthly_usd)]] : []),
  ]));
  const rows = (data, key) => data.map((r) => [r[key] ?? '(none)', String(r.requests), String(r.input_tokens), String(r.output_tokens), usd(r.cost_usd),
    String(r.unknown_cost_requests || 0), String(r.cache_hits || 0), key === 'agent' ? bar(r.cost_usd || 0, max) : '']);
  const head = ['', 'Requests', 'Input tokens', 'Output tokens', 'Cost', 'Unknown cost', 'Cache hits', ''];
  const days = new Map();
  for (const r of daily.data) {
    const d = days.get(r.day) || { cost: 0, tokens: 0 };
    d.cost += r.cost_usd; d.tokens += r.input_tokens + r.output_tokens;
    days.set(r.day, d);
  }
  const series = [...days].map(([day, v]) => ({ day, ...v }));
  show('Spend', f, el('h2', {}, 'Over time'),
    el('div', { class: 'charts' }, chart('Cost per day (USD)', series.map((s) => [s.day, s.cost]), usd), chart('Tokens per day', series.map((s) => [s.day, s.tokens]), String)),
    el('h2', {}, 'Budgets (burn-down)'), table(['Agent', 'Budget', 'Window', 'Spent', 'Limit', ''], burn),
    ...by.flatMap((b, i) => [el('h2', {}, `By ${b === 'key' ? 'virtual key' : b}`), table([b === 'key' ? 'Key id' : b[0].toUpperCase() + b.slice(1), ...head.slice(1)], rows(usage[i].data, b))]),
    el('p', {}, 'Calls whose cost is unknown are counted apart, never as $0.'));
  // Widths are set from script (CSP forbids inline style attributes in markup).
  for (const e of main.querySelectorAll('.fill')) e.style.width = `${e.dataset.pct}%`;
}

/** A bar chart as SVG (no library, no inline style): one bar per [label, value], values as text too. */
function chart(title, points, fmt) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = (tag, attrs, ...kids) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v)); e.append(...kids); return e; };
  const W = 480, H = 160, pad = 24;
  const top = Math.max(0, ...points.map((p) => p[1]));
  const max = top || 1;
  const bw = points.length ? Math.min(40, (W - pad) / points.length) : 0;
  const bars = points.map(([label, v], i) => {
    const h = Math.round(((H - pad) * v) / max);
    return svg('rect', { x: pad + i * bw + 2, y: H - pad - h, width: Math.max(1, bw - 4), height: h, class: 'bar-rect' }, svg('title', {}, `${label}: ${fmt(v)}`));
  });
  const axis = svg('line', { x1: pad, y1: H - pad, x2: W, y2: H - pad, class: 'axis' });
  const labels = points.length ? [svg('text', { x: pad, y: H - 6, class: 'tick' }, points[0][0]), svg('text', { x: W, y: H - 6, class: 'tick', 'text-anchor': 'end' }, points[points.length - 1][0]), svg('text', { x: pad, y: 12, class: 'tick' }, `max ${fmt(top)}`)] : [svg('text', { x: pad, y: H / 2, class: 'tick' }, 'no calls in this window')];
  const figure = el('figure', {}, el('figcaption', {}, title));
  figure.append(svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': `${title}: ${points.map(([l, v]) => `${l} ${fmt(v)}`).join(', ') || 'no data'}` }, axis, ...bars, ...labels));
  return figure;
}

/** The hash as a path; a malformed escape (#/agents/%E0) is taken as written rather than stopping the router. */
function hashPath(raw) {
  try { return decodeURIComponent(raw); } catch { return raw; }
}

async function route() {
  navigation++;
  stopTail();
  const h = hashPath(location.hash.slice(1) || '/agents');
  const [path, query] = h.split('?');
  let m;
  try {
    if ((m = /^\/agents\/(.+)$/.exec(path))) await agentPage(m[1]);
    else if (path === '/approvals') await approvalsPage();
    else if (path === '/simulator') await simulatorPage();
    else if (path === '/tools') await toolsPage();
    else if (path === '/spend') await spendPage(query || '');
    else if ((m = /^\/audit\/(.+)$/.exec(path))) await requestPage(m[1]);
    else if (path === '/audit') await auditPage(query || '');
    else await agentsPage();
  } catch (e) {
    if (e instanceof Superseded) return; // the newer navigation shows its page
    if (e instanceof SignedOut) show('Signed out', signedOut());
    else show('Error', notice(e.message, 'error'));
  }
  for (const a of document.querySelectorAll('nav a')) {
    if (location.hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

/** Warn this long before the session ends for good (or at once when less is left). */
const WARN_MS = 5 * 60_000;
const clock = (d) => d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/**
 * The header's "until" in the browser's time zone, a warning (role=alert) WARN_MS before the session
 * ends when nothing can renew it past then, and the signed-out page when it has ended.
 */
function watchSessionEnd(iso) {
  const t = document.getElementById('session-end');
  if (!iso || !t) return;
  const end = new Date(iso);
  t.textContent = clock(end);
  t.setAttribute('datetime', iso);
  const box = document.getElementById('session-warning');
  const left = end.getTime() - Date.now();
  setTimeout(() => {
    box.replaceChildren(el('p', { class: 'warning', role: 'alert' }, `Your session ends at ${clock(end)} and cannot be renewed past then: finish what you are doing, then `,
      el('a', { href: '/console/login' }, 'sign in again'), '.'));
  }, Math.max(0, left - WARN_MS));
  // setTimeout takes at most 2^31-1 ms (24.8 days): a longer session is warned about by a later page load.
  if (left < 2 ** 31) setTimeout(() => { box.replaceChildren(); navigation++; stopTail(); show('Signed out', signedOut()); }, Math.max(0, left));
}

api('GET', '/me').then((m) => { me = m; watchSessionEnd(m.session_expires_at); route(); }, (e) => (e instanceof SignedOut ? show('Signed out', signedOut()) : show('Error', notice(e.message, 'error'))));
window.addEventListener('hashchange', route);
// The skip link moves focus to the content without touching the hash (the hash is the router's).
document.querySelector('.skip').addEventListener('click', (ev) => { ev.preventDefault(); main.focus(); });
