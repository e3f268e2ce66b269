// The arbiter console: one page over the /api/v1 endpoints, no dependencies. Every
// value from the server is put in the page as text (never as HTML), and the API key
// stays in this tab's sessionStorage.
'use strict';

const $ = (id) => document.getElementById(id);
const ROLES = ['viewer', 'editor', 'admin'];
const FACTORS = ['propensity', 'relevance', 'impact', 'emphasis'];
let session = null;
let flows = [];

// ---------------------------------------------------------------- plumbing

function el(tag, attrs = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k === 'class') node.className = v;
    // Through the CSSOM: the content security policy refuses style attributes.
    else if (k === 'style') node.style.cssText = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, ...kids) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

function showError(message, status) {
  const box = $('error');
  box.textContent = status ? `The API answered ${status}: ${message}` : message;
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
}

/// Calls the API with the session's key; a refusal is shown as the API worded it.
async function api(method, path, body, { text = false, quiet = false } = {}) {
  const headers = { 'X-API-Key': session.key };
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = text ? 'text/plain' : 'application/json';
    payload = text ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    showError(`could not reach the server: ${e.message}`);
    return { ok: false, status: 0, json: null };
  }
  const raw = await res.text();
  let json = null;
  try {
    json = raw ? JSON.parse(raw) : null;
  } catch (_) {
    json = null;
  }
  if (!res.ok && !quiet) showError(json?.error?.message ?? raw, res.status);
  return { ok: res.ok, status: res.status, json };
}

const pct = (x) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(1)} %`);
const num = (x, d = 3) => (x === null || x === undefined ? '—' : Number(x).toFixed(d));
const interval = (i, f = pct) => (i ? `[${f(i.lower)}, ${f(i.upper)}]` : '—');
const may = (role) => ROLES.indexOf(session.role) >= ROLES.indexOf(role);

function guard(button, role) {
  button.dataset.role = role;
  button.disabled = !may(role);
  if (button.disabled) button.title = `needs the ${role} role`;
  return button;
}

function applyRoles() {
  document.querySelectorAll('[data-role]').forEach((b) => guard(b, b.dataset.role));
}

// ---------------------------------------------------------------- sign in and tabs

async function signIn(key) {
  session = { key };
  const me = await api('GET', '/api/v1/whoami', undefined, { quiet: true });
  if (!me.ok) {
    session = null;
    sessionStorage.removeItem('arbiter.key');
    showError(me.json?.error?.message ?? 'sign-in failed', me.status);
    return;
  }
  clearError();
  Object.assign(session, { tenantId: me.json.tenantId, role: me.json.role });
  sessionStorage.setItem('arbiter.key', key);
  $('who').textContent = `tenant ${session.tenantId} · ${session.role}`;
  for (const id of ['tabs', 'who', 'signout']) $(id).hidden = false;
  $('signin').hidden = true;
  applyRoles();
  await loadShared();
  openTab('whynot');
}

function signOut() {
  sessionStorage.removeItem('arbiter.key');
  location.reload();
}

function openTab(name) {
  clearError();
  document.querySelectorAll('.tab').forEach((s) => (s.hidden = s.id !== name));
  document.querySelectorAll('#tabs button').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
  if (name === 'flows') loadFlows();
  if (name === 'rules') loadRuleFiles();
}

async function loadShared() {
  const [f, c] = await Promise.all([
    api('GET', '/api/v1/decision-flows?limit=100'),
    api('GET', '/api/v1/channels?limit=100'),
  ]);
  flows = f.ok ? f.json.data : [];
  const flowOptions = () => flows.map((x) => el('option', { value: x.id, text: `${x.key} — ${x.name}` }));
  $('wn-flow').replaceChildren(...flowOptions());
  $('exp-flow').replaceChildren(...flowOptions());
  const channels = c.ok ? c.json.data : [];
  $('wn-channel').replaceChildren(el('option', { value: '', text: '(none)' }),
    ...channels.map((x) => el('option', { value: x.name, text: x.name })));
  await loadVersionChoices();
}

// ---------------------------------------------------------------- why not?

async function loadVersionChoices() {
  const flow = flows.find((x) => x.id === $('wn-flow').value);
  const choices = [el('option', { value: 'live', text: 'live' }), el('option', { value: 'draft', text: 'draft' })];
  if (flow && may('editor')) {
    const v = await api('GET', `/api/v1/decision-flows/versions?id=${encodeURIComponent(flow.id)}&limit=100`, undefined, { quiet: true });
    for (const version of v.ok ? v.json.versions : []) {
      choices.push(el('option', { value: String(version.version), text: `v${version.version}` }));
    }
  }
  $('wn-version').replaceChildren(...choices);
}

async function whyNot(event) {
  event.preventDefault();
  clearError();
  const flow = flows.find((x) => x.id === $('wn-flow').value);
  if (!flow) return showError('create a decision flow first');
  const body = { customerId: $('wn-customer').value.trim(), decisionFlowKey: flow.key };
  if ($('wn-channel').value) body.channel = $('wn-channel').value;
  const version = $('wn-version').value;
  if (version === 'draft') body.draft = true;
  else if (version !== 'live') body.flowVersion = Number(version);
  const r = await api('POST', '/api/v1/recommend?dryRun=true&explain=true', body);
  $('wn-result').replaceChildren();
  if (r.ok) renderWhyNot(r.json);
}

function renderWhyNot(d) {
  const removed = d.explanation?.removed ?? [];
  const stages = [
    ['candidates', d.meta.totalCandidates],
    ['after qualification', d.meta.afterQualification],
    ['after suppression', d.meta.afterSuppression],
    ['after contact policy', d.meta.afterContactPolicy],
    ['shown', d.decisions.length],
  ];
  const top = Math.max(1, d.meta.totalCandidates);
  const funnel = el('div', { class: 'funnel' });
  for (const [label, n] of stages) {
    funnel.append(el('span', { text: label }),
      el('div', {}, el('div', { class: 'bar', style: `width:${(100 * n) / top}%` })),
      el('span', { class: 'score', text: n }));
  }
  const head = el('div', { class: 'card', id: 'wn-funnel' },
    el('h2', { text: `${d.customerId} on ${d.channel ?? 'no channel'} — ${d.decisionFlowKey} v${d.decisionFlowVersion}` }),
    funnel,
    d.controlGroup ? el('p', { class: 'hint', text: 'This customer is in the holdout: the flow shows nothing.' }) : null,
    (d.meta.warnings ?? []).map((w) => el('p', { class: 'hint', text: `warning: ${w}` })));

  const shown = el('div', { id: 'wn-shown' }, el('h2', { text: 'Shown' }));
  if (!d.decisions.length) shown.append(el('p', { class: 'hint', text: 'No offer is shown.' }));
  for (const o of d.decisions) shown.append(offerCard(o));

  const table = el('table', { id: 'wn-removed' },
    el('tr', {}, ['offer', 'removed at', 'by', 'expected', 'actual', 'why'].map((h) => el('th', { text: h }))));
  for (const r of removed) {
    const by = r.rule ? `rule: ${r.rule.name}` : r.policy ? `policy: ${r.policy.name} (${r.policy.ruleType})` : r.nodeType;
    const expected = r.rule?.attribute ? `${r.rule.attribute} ${r.rule.operator ?? ''} ${JSON.stringify(r.rule.expected ?? null)}` : (r.rule?.source ?? '');
    const actual = r.rule && 'actual' in r.rule ? JSON.stringify(r.rule.actual) : '';
    table.append(el('tr', { 'data-offer': r.offerName },
      el('td', { text: r.offerName }), el('td', { text: `${r.nodeType} (${r.nodeId})` }),
      el('td', {}, el('span', { class: 'tag bad', text: by })), el('td', { text: expected }),
      el('td', { text: actual }), el('td', { text: r.reason })));
  }
  const removedBox = el('div', {}, el('h2', { text: `Removed (${removed.length})` }),
    removed.length ? table : el('p', { class: 'hint', text: 'Nothing was removed.' }));
  $('wn-result').replaceChildren(head, shown, removedBox);
}

function offerCard(o) {
  const s = o.explanation?.rankingScores;
  const card = el('div', { class: 'card', 'data-offer': o.offerName },
    el('div', { class: 'offer' }, el('span', { class: 'rank', text: `#${o.rank}` }),
      el('strong', { text: o.offerName }), el('span', { class: 'score', text: num(o.score) })));
  if (!s) return card;
  const w = s.weights;
  const parts = FACTORS.map((f) => [f, s[f] * (w[`${f}Weight`] ?? 0)]);
  const total = parts.reduce((a, [, v]) => a + Math.max(0, v), 0) || 1;
  card.append(el('div', { class: 'stack', title: 'each factor × its weight' },
    parts.map(([f, v]) => el('span', { class: `f-${f}`, style: `width:${(100 * Math.max(0, v)) / total}%` }))));
  card.append(el('div', { class: 'legend' },
    parts.map(([f, v]) => el('span', {}, el('i', { class: `f-${f}` }), `${f} ${num(s[f])} × ${num(w[`${f}Weight`], 2)} = ${num(v)}`)),
    el('span', { text: `fit × ${num(s.fitMultiplier, 2)}` }),
    el('span', { text: `τ ${s.tau === null ? '—' : num(s.tau)}${s.tauSe ? ` ± ${num(s.tauSe)}` : ''}` }),
    s.segment ? el('span', { class: 'tag', text: s.segment }) : null,
    el('span', { text: `uplift × ${num(s.upliftFactor, 3)}` }),
    el('span', { text: `weights from ${s.weightsFrom}` }),
    el('span', { text: `final ${num(s.finalScore)}` })));
  return card;
}

// ---------------------------------------------------------------- flows

async function loadFlows() {
  const f = await api('GET', '/api/v1/decision-flows?limit=100');
  if (!f.ok) return;
  flows = f.json.data;
  $('flow-list').replaceChildren(...flows.map((x) =>
    el('li', { 'data-id': x.id, onclick: () => showFlow(x.id) }, el('strong', { text: x.key }), el('br'),
      el('span', { class: 'hint', text: `${x.status} · live ${x.liveVersion ? `v${x.liveVersion.version}` : '—'}` }))));
}

async function showFlow(id) {
  clearError();
  document.querySelectorAll('#flow-list li').forEach((li) => li.classList.toggle('active', li.dataset.id === id));
  const f = await api('GET', `/api/v1/decision-flows/${encodeURIComponent(id)}`);
  if (!f.ok) return;
  const flow = f.json;
  const detail = $('flow-detail');
  const publish = guard(el('button', { text: 'Publish the draft', onclick: async () => {
    const r = await api('POST', '/api/v1/decision-flows/publish', { id });
    if (r.ok) showFlow(id);
  } }), 'editor');
  const simulate = guard(el('button', { class: 'secondary', text: 'Simulate the draft on logged traffic', onclick: () => simulateDraft(id) }), 'editor');
  detail.replaceChildren(el('div', { class: 'card' },
    el('h2', { text: `${flow.name} (${flow.key})` }),
    el('p', { class: 'hint', text: `status ${flow.status} · live version ${flow.liveVersion ? `v${flow.liveVersion.version}` : 'none'} · ${flow.versionCount ?? 0} versions` }),
    el('div', { class: 'row' }, publish, simulate)),
  el('div', { id: 'flow-sim' }), el('div', { id: 'flow-versions' }), el('div', { id: 'flow-diff' }));
  if (!may('editor')) {
    $('flow-versions').append(el('p', { class: 'hint', text: 'Versions need the editor role.' }));
    return;
  }
  const v = await api('GET', `/api/v1/decision-flows/versions?id=${encodeURIComponent(id)}&limit=100`);
  if (!v.ok) return;
  const versions = v.json.versions;
  const pick = (name, value) => el('select', { id: name },
    el('option', { value: 'draft', text: 'draft' }),
    versions.map((x) => el('option', { value: String(x.version), text: `v${x.version}`, selected: String(x.version) === value })));
  const last = versions.length ? String(versions[versions.length - 1].version) : 'draft';
  const before = versions.length > 1 ? String(versions[versions.length - 2].version) : last;
  const table = el('table', {}, el('tr', {}, ['version', 'published', 'notes', 'nodes', ''].map((h) => el('th', { text: h }))));
  for (const x of versions) {
    const rollback = guard(el('button', { class: 'secondary', text: 'Roll back to this', onclick: async () => {
      const r = await api('POST', '/api/v1/decision-flows/rollback', { id, version: x.version });
      if (r.ok) showFlow(id);
    } }), 'admin');
    table.append(el('tr', {}, el('td', { text: `v${x.version}` }), el('td', { text: x.publishedAt }),
      el('td', { text: x.notes ?? '' }), el('td', { text: x.summary.nodeCount }), el('td', {}, rollback)));
  }
  $('flow-versions').replaceChildren(el('h2', { text: 'Versions' }), table,
    el('div', { class: 'row' }, el('label', {}, 'from', pick('diff-a', before)), el('label', {}, 'to', pick('diff-b', 'draft')),
      el('button', { class: 'secondary', text: 'Diff', onclick: () => diffVersions(flow) })));
}

async function configOf(flow, which) {
  if (which === 'draft') return flow.draftConfig;
  const r = await api('GET', `/api/v1/decision-flows/${encodeURIComponent(flow.id)}/versions/${which}`);
  return r.ok ? r.json.configSnapshot : null;
}

async function diffVersions(flow) {
  const [a, b] = [$('diff-a').value, $('diff-b').value];
  const [x, y] = await Promise.all([configOf(flow, a), configOf(flow, b)]);
  if (!x || !y) return;
  const lines = diffLines(JSON.stringify(x, null, 2).split('\n'), JSON.stringify(y, null, 2).split('\n'));
  const changed = lines.filter(([k]) => k !== 'same').length;
  $('flow-diff').replaceChildren(el('h2', { text: `${a === 'draft' ? 'draft' : `v${a}`} → ${b === 'draft' ? 'draft' : `v${b}`}: ${changed} lines differ` }),
    el('div', { class: 'diff' }, withContext(lines, 3).map(([kind, text]) =>
      el('span', { class: kind, text: kind === 'skip' ? text : `${kind === 'add' ? '+' : kind === 'del' ? '-' : ' '} ${text}` }))));
}

/// The changed lines with `n` lines of context around each; the rest folded.
function withContext(lines, n) {
  const near = lines.map(() => false);
  lines.forEach(([kind], i) => {
    if (kind === 'same') return;
    for (let j = Math.max(0, i - n); j <= Math.min(lines.length - 1, i + n); j++) near[j] = true;
  });
  const out = [];
  let skipped = 0;
  lines.forEach((line, i) => {
    if (near[i]) {
      if (skipped) out.push(['skip', `  … ${skipped} unchanged lines`]);
      skipped = 0;
      out.push(line);
    } else skipped++;
  });
  if (skipped) out.push(['skip', `  … ${skipped} unchanged lines`]);
  return out;
}

/// A line diff by longest common subsequence (configs are a few hundred lines).
function diffLines(a, b) {
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push(['same', a[i]]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(['del', a[i++]]);
    else out.push(['add', b[j++]]);
  }
  while (i < n) out.push(['del', a[i++]]);
  while (j < m) out.push(['add', b[j++]]);
  return out;
}

async function simulateDraft(id) {
  const box = $('flow-sim');
  box.replaceChildren(el('p', { class: 'hint', text: 'Simulating…' }));
  const r = await api('POST', '/api/v1/decision-flows/simulate', { id });
  if (!r.ok) return box.replaceChildren();
  const s = r.json;
  const table = el('table', {}, el('tr', {}, ['offer', 'live share', '', 'draft share', ''].map((h) => el('th', { text: h }))));
  for (const o of s.offers) {
    const bar = (x) => el('div', { class: 'bar', style: `width:${Math.round(100 * x)}%` });
    table.append(el('tr', {}, el('td', { text: o.offerName }), el('td', { text: pct(o.liveShare) }), el('td', {}, bar(o.liveShare)),
      el('td', { text: pct(o.draftShare) }), el('td', {}, bar(o.draftShare))));
  }
  box.replaceChildren(el('div', { class: 'card' }, el('h2', { text: `The draft on ${s.requests} logged requests: ${s.changed} would change` }), table,
    el('p', { class: 'hint', text: s.estimate ? `expected conversions per request (SNIPS): ${num(s.estimate.draft?.snips?.conversions?.value ?? null)}` : (s.estimateNote ?? '') })));
}

// ---------------------------------------------------------------- rule files

let ruleFile = null;
let checkTimer = null;

async function loadRuleFiles() {
  const r = await api('GET', '/api/v1/plugins');
  if (!r.ok) return;
  $('rule-list').replaceChildren(...r.json.map((p) =>
    el('li', { 'data-name': p.name, onclick: () => openRuleFile(p.name) }, el('strong', { text: p.name }), el('br'),
      el('span', { class: 'hint', text: `${p.rules} rules` }))));
}

async function openRuleFile(name, source) {
  clearError();
  document.querySelectorAll('#rule-list li').forEach((li) => li.classList.toggle('active', li.dataset.name === name));
  if (source === undefined) {
    const r = await api('GET', `/api/v1/plugins/${encodeURIComponent(name)}`);
    if (!r.ok) return;
    source = r.json.source;
  }
  ruleFile = name;
  $('rule-detail').hidden = false;
  $('rule-name').textContent = name;
  $('rule-status').textContent = '';
  const text = $('rule-source');
  text.value = source;
  text.readOnly = !may('editor');
  render(source, []);
  $('rule-diagnostics').replaceChildren();
}

const KEYWORDS = new Set(['rule', 'for', 'offer', 'offers', 'category', 'channel', 'flow', 'let', 'score', 'on', 'weights',
  'and', 'or', 'not', 'in', 'true', 'false', 'null', 'stage', 'priority', 'multiplier', 'exists', 'when', 'all']);
const TOKENS = /(\/\/[^\n]*)|("(?:[^"\\\n]|\\.)*"?)|(\b\d[\d_]*(?:\.\d+)?\b)|\b((?:customer|request|attributes|offer|channel)\.[A-Za-z_]\w*)|\b([A-Za-z_]\w*)\b/g;

/// The source as highlighted nodes: comments, strings, numbers, attributes, keywords.
function highlighted(line) {
  const out = [];
  let at = 0;
  for (const m of line.matchAll(TOKENS)) {
    if (m.index > at) out.push(line.slice(at, m.index));
    const [text, com, str, n, attr, word] = m;
    const cls = com ? 't-com' : str ? 't-str' : n ? 't-num' : attr ? 't-attr' : KEYWORDS.has(word) ? 't-kw' : null;
    out.push(cls ? el('span', { class: cls, text }) : text);
    at = m.index + text.length;
  }
  if (at < line.length) out.push(line.slice(at));
  return out;
}

function render(source, diagnostics) {
  const bad = new Set(diagnostics.filter((d) => d.severity === 'error').map((d) => d.line));
  const lines = source.split('\n');
  $('rule-highlight').replaceChildren(...lines.map((line, i) =>
    el('span', { class: bad.has(i + 1) ? 'line-bad' : null }, highlighted(line), i < lines.length - 1 ? '\n' : '')));
  $('rule-gutter').replaceChildren(...lines.map((_, i) =>
    el('span', { class: bad.has(i + 1) ? 'bad' : null, 'data-line': i + 1, text: `${i + 1}\n` })));
  const text = $('rule-source');
  text.style.height = 'auto';
  text.style.height = `${text.scrollHeight}px`;
}

function onRuleInput() {
  const source = $('rule-source').value;
  render(source, []);
  $('rule-status').textContent = '';
  clearTimeout(checkTimer);
  if (may('editor')) checkTimer = setTimeout(() => checkRuleFile(source), 250);
}

async function checkRuleFile(source) {
  const name = ruleFile;
  const r = await api('POST', `/api/v1/plugins/${encodeURIComponent(name)}/check`, source, { text: true });
  if (!r.ok || name !== ruleFile || source !== $('rule-source').value) return;
  const diags = r.json.diagnostics;
  render(source, diags);
  $('rule-status').textContent = r.json.ok ? ` checks: ${r.json.rules} rules, ${r.json.scores} score blocks` : ' has errors';
  $('rule-diagnostics').replaceChildren(...diags.map((d) =>
    el('li', { class: d.severity, 'data-line': d.line }, `${d.file}:${d.line}:${d.column} ${d.code} ${d.message}${d.help ? ` — ${d.help}` : ''}`)));
}

async function saveRuleFile() {
  clearError();
  const r = await api('PUT', `/api/v1/plugins/${encodeURIComponent(ruleFile)}`, $('rule-source').value, { text: true });
  if (r.ok) {
    $('rule-status').textContent = ` saved: ${r.json.rules} rules live`;
    loadRuleFiles();
  } else if (r.json?.error?.details?.diagnostics) {
    render($('rule-source').value, r.json.error.details.diagnostics);
  }
}

// ---------------------------------------------------------------- experiments and uplift

async function showExperiment(event) {
  event?.preventDefault();
  clearError();
  const flow = flows.find((x) => x.id === $('exp-flow').value);
  if (!flow) return showError('create a decision flow first');
  const r = await api('GET', `/api/v1/experiments/${encodeURIComponent(flow.key)}/results`);
  $('exp-result').replaceChildren();
  $('exp-models').replaceChildren();
  if (!r.ok) return;
  const e = r.json;
  if (e.error) {
    $('exp-result').append(el('p', { class: 'hint', text: e.error }));
  } else {
    $('exp-result').append(experimentCard(e));
  }
  const q = await api('GET', `/api/v1/algorithm-models/${encodeURIComponent(flow.key)}/qini`);
  if (!q.ok) return;
  if (!q.json.trained) {
    $('exp-models').append(el('p', { class: 'hint', text: q.json.note }));
    return;
  }
  $('exp-models').append(el('h2', { text: 'Uplift models per offer' }), el('p', { class: 'hint', text: q.json.note }));
  for (const o of q.json.offers) $('exp-models').append(offerUplift(o));
}

function experimentCard(e) {
  const arms = [['treated', e.treated], ['control', e.control]];
  const width = 420, height = 170, left = 70, base = 140;
  const top = Math.max(0.01, ...arms.map(([, a]) => a.wilson?.upper ?? a.conversionRate ?? 0));
  const y = (v) => base - (120 * v) / top;
  const chart = svg('svg', { id: 'exp-chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'conversion by arm with Wilson intervals' },
    svg('line', { x1: left, y1: base, x2: width - 10, y2: base, stroke: '#d9dde5' }),
    svg('text', { x: 4, y: y(top) + 4 }, pct(top)), svg('text', { x: 4, y: base + 4 }, '0 %'));
  arms.forEach(([name, a], i) => {
    const x = left + 40 + i * 150, rate = a.conversionRate ?? 0;
    chart.append(svg('rect', { x, y: y(rate), width: 70, height: base - y(rate), fill: i ? '#8a94a6' : '#2f5bd3' }),
      svg('text', { x, y: base + 16 }, `${name} ${pct(a.conversionRate)}`),
      svg('text', { x, y: base + 29 }, `${a.conversions} / ${a.samples}`));
    if (a.wilson) {
      const cx = x + 35;
      chart.append(svg('line', { x1: cx, x2: cx, y1: y(a.wilson.lower), y2: y(a.wilson.upper), stroke: '#1d2330', 'stroke-width': 2 }),
        svg('line', { x1: cx - 8, x2: cx + 8, y1: y(a.wilson.upper), y2: y(a.wilson.upper), stroke: '#1d2330' }),
        svg('line', { x1: cx - 8, x2: cx + 8, y1: y(a.wilson.lower), y2: y(a.wilson.lower), stroke: '#1d2330' }));
    }
  });
  const stat = (label, value) => el('span', { class: 'stat' }, el('b', { text: value }), label);
  const rev = e.revenue;
  return el('div', { class: 'card' },
    el('h2', { text: `${e.flowKey}: treated vs control (holdout ${e.holdoutPercent ?? '—'} %)` }),
    chart,
    el('div', {},
      stat('uplift (Newcombe 95 %)', `${pct(e.uplift)} ${interval(e.upliftInterval95)}`),
      stat('z', num(e.zScore, 2)), stat('p', num(e.pValue, 4)),
      stat('significant', e.significant === null ? '—' : e.significant ? 'yes' : 'no'),
      stat('incremental revenue per treated customer', `${num(rev.incrementalPerTreatedCustomer, 2)} ${interval(rev.incrementalPerTreatedCustomerInterval95, (x) => num(x, 2))}`),
      stat('incremental revenue in all', `${num(rev.incrementalTotal, 0)} ${interval(rev.incrementalTotalInterval95, (x) => num(x, 0))}`)),
    e.insufficientData ? el('p', { class: 'hint', text: `Not enough data yet: at least ${e.minSamplesPerArm} customers per arm.` }) : null);
}

const SEGMENT_COLOURS = { persuadable: '#1f8a4c', sure_thing: '#2f5bd3', lost_cause: '#8a94a6', sleeping_dog: '#c2342c', uncertain: '#d9dde5' };

function offerUplift(o) {
  const total = o.segments.reduce((a, s) => a + s.customers, 0) || 1;
  const segments = el('div', { class: 'stack', title: 'customers per segment' },
    o.segments.map((s) => el('span', { style: `width:${(100 * s.customers) / total}%;background:${SEGMENT_COLOURS[s.segment]}` })));
  const legend = el('div', { class: 'legend' }, o.segments.map((s) =>
    el('span', {}, el('i', { style: `background:${SEGMENT_COLOURS[s.segment]}` }), `${s.segment} ${s.customers}`)));
  return el('div', { class: 'card qini', 'data-offer': o.offerName },
    el('strong', { text: o.offerName }), el('span', { class: 'hint', text: ` · ${o.rows} customers · Qini coefficient ${num(o.qiniCoefficient)}` }),
    segments, legend, qiniChart(o.qini));
}

function qiniChart(points) {
  const width = 360, height = 180, pad = 30;
  const values = points.flatMap((p) => [p.gain, p.random]);
  const lo = Math.min(0, ...values), hi = Math.max(1e-9, ...values);
  const x = (f) => pad + f * (width - 2 * pad);
  const y = (v) => height - pad - ((v - lo) / (hi - lo || 1)) * (height - 2 * pad);
  const path = (key) => points.map((p, i) => `${i ? 'L' : 'M'}${x(p.fraction).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ');
  return svg('svg', { class: 'qini-chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Qini curve' },
    svg('line', { x1: pad, y1: y(0), x2: width - pad, y2: y(0), stroke: '#d9dde5' }),
    svg('path', { d: path('random'), fill: 'none', stroke: '#8a94a6', 'stroke-dasharray': '4 3' }),
    svg('path', { d: path('gain'), fill: 'none', stroke: '#2f5bd3', 'stroke-width': 2 }),
    svg('text', { x: pad, y: height - 8 }, 'customers targeted, by predicted uplift →'),
    svg('text', { x: 2, y: pad - 8 }, `incremental conversions (max ${num(hi, 1)})`));
}

async function trainModels() {
  const flow = flows.find((x) => x.id === $('exp-flow').value);
  if (!flow) return;
  const r = await api('POST', `/api/v1/algorithm-models/${encodeURIComponent(flow.key)}/train`);
  if (r.ok) showExperiment();
}

// ---------------------------------------------------------------- start

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('key').value.trim());
  });
  $('signout').addEventListener('click', signOut);
  document.querySelectorAll('#tabs button').forEach((b) => b.addEventListener('click', () => openTab(b.dataset.tab)));
  $('whynot-form').addEventListener('submit', whyNot);
  $('wn-flow').addEventListener('change', loadVersionChoices);
  $('exp-form').addEventListener('submit', showExperiment);
  $('exp-train').addEventListener('click', trainModels);
  $('rule-source').addEventListener('input', onRuleInput);
  $('rule-save').addEventListener('click', saveRuleFile);
  $('rule-new').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('rule-new-name').value.trim();
    if (name) openRuleFile(name, '');
  });
  const kept = sessionStorage.getItem('arbiter.key');
  if (kept) signIn(kept);
});
