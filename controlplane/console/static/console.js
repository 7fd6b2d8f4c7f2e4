// The FLARE web console. Every view reads and writes through the REST API
// (/api/v1/...) with the signed-in bearer token, so it sees exactly what the
// token's tenant and scopes allow. Rendering: Preact through htm.
import { html, render, useEffect, useState } from "./vendor/preact-htm.js";

const TOKEN_KEY = "flare.console.token";
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
const SAMPLE = `# An intent, in YAML or JSON (the seeds' spelling works too).
intent:
  objective: OBJECTIVE_COST_MINIMIZATION
  workload:
    type: WORKLOAD_TYPE_JOB
    name: console-training
    image: ghcr.io/example/train:1.0
    resources:
      gpu:
        model: nvidia-h100
        count: 1
  constraints:
    location: EU
    max_hourly_cost: 10 EUR
`;

// ---- the API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.status || "";
    this.violations = (error.details || [])
      .filter((d) => d["@type"] === "type.googleapis.com/google.rpc.BadRequest")
      .flatMap((d) => d.field_violations || []);
  }
}

function headers() {
  return { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
}

async function api(method, path, body, contentType = "application/json") {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = contentType;
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Newline-delimited JSON from a server stream, one object per call of onItem,
// until the stream ends or `signal` aborts it.
async function follow(path, onItem, signal) {
  const response = await fetch(path, { headers: headers(), signal });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, end).trim();
      buffered = buffered.slice(end + 1);
      if (!line) continue;
      const item = JSON.parse(line);
      if (item.error) throw new ApiError(200, item);
      onItem(item);
    }
  }
}

// Keeps a stream open while the view lives: reconnects with backoff after it ends.
function useFollow(path, onItem, onError) {
  useEffect(() => {
    const abort = new AbortController();
    let delay = 500;
    (async () => {
      while (!abort.signal.aborted) {
        try {
          await follow(path, (item) => { delay = 500; onItem(item); }, abort.signal);
        } catch (error) {
          if (abort.signal.aborted) return;
          onError(error);
          if (error instanceof ApiError && [401, 403, 404].includes(error.status)) return;
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 10000);
      }
    })();
    return () => abort.abort();
  }, [path]);
}

// ---- small pieces ---------------------------------------------------------

const bare = (enumName, prefix) => (enumName || "").replace(prefix, "");
// How the pods get their GPUs (the intent's gpu_access, set when it deploys).
const gpuAccess = (a) => {
  if (!a || !a.method) return "—";
  if (bare(a.method, "GPU_ACCESS_METHOD_") === "RESOURCE_CLAIM") {
    return `${a.gpus_per_pod} per pod claimed through DRA (DeviceClass ${a.device_class}, ResourceClaimTemplate ${a.claim_template})`;
  }
  return `${a.gpus_per_pod} per pod as ${a.resource} limits${a.reason ? `: ${a.reason}` : ""}`;
};
const stateOf = (intent) => bare(intent.state, "STATE_");
const money = (m) => (m && m.amount ? `${m.amount} ${m.currency_code}` : "—");
const when = (t) => (t ? new Date(t).toLocaleString() : "—");
const gib = (bytes) => (bytes === undefined ? "—" : `${(Number(bytes) / 2 ** 30).toFixed(1)} GiB`);
const shortName = (name) => (name || "").split("/").pop();

function State({ intent }) {
  const state = stateOf(intent);
  return html`<span class="state state-${state}" data-state=${state}>${state}</span>`;
}

function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    <strong>${error.code ? `${error.code}: ` : ""}</strong>${error.message}
    ${error.violations && error.violations.length > 0 && html`<ul class="violations">
      ${error.violations.map((v) => html`<li><code class="field">${v.field}</code> ${v.description}</li>`)}
    </ul>`}
  </div>`;
}

function Bar({ percent }) {
  if (percent === undefined || percent === null) return html`<span class="muted">—</span>`;
  const p = Math.max(0, Math.min(100, percent));
  return html`<div class="bar" title="${p.toFixed(0)}%"><span style=${{ width: `${p}%` }}></span>
    <em>${p.toFixed(0)}%</em></div>`;
}

// ---- views ----------------------------------------------------------------

function SignIn({ onSignedIn }) {
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const field = event.target.elements.token;
    sessionStorage.setItem(TOKEN_KEY, field.value.trim());
    field.value = "";
    try {
      await api("GET", "/api/v1/intents?page_size=1");
      onSignedIn();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      setError(e);
    }
  };
  return html`<section class="card signin">
    <h1>Sign in to FLARE</h1>
    <p class="muted">Paste an API token (<code>flarectl token create</code>). It is kept in this
      tab only and sent as a bearer token to the API.</p>
    <${ErrorBox} error=${error} />
    <form onSubmit=${submit}>
      <input type="password" name="token" autocomplete="off" placeholder="flr_…" required />
      <button class="primary" type="submit">Sign in</button>
    </form>
  </section>`;
}

function Intents() {
  const [intents, setIntents] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    const load = () => api("GET", "/api/v1/intents?page_size=200")
      .then((data) => { if (live) { setIntents(data.intents || []); setError(null); } })
      .catch((e) => live && setError(e));
    load();
    const timer = setInterval(load, 2000);
    return () => { live = false; clearInterval(timer); };
  }, []);
  return html`<h1>Intents</h1>
    <div class="actions"><a href="#/new"><button class="primary">New intent</button></a></div>
    <${ErrorBox} error=${error} />
    ${intents === null ? html`<p class="muted">Loading…</p>` : intents.length === 0
      ? html`<p class="muted" id="no-intents">No intents yet.</p>`
      : html`<table id="intents"><thead><tr><th>Intent</th><th>State</th><th>GPUs</th>
          <th>Placement</th><th class="num">Cost per hour</th><th>Updated</th></tr></thead>
        <tbody>${intents.map((i) => html`<tr data-name=${i.name}>
          <td><a href="#/intents/${i.name}">${shortName(i.name)}</a></td>
          <td><${State} intent=${i} /></td>
          <td>${(i.workload?.resources?.gpu?.count || 0)}× ${i.workload?.resources?.gpu?.model || "any"}</td>
          <td>${i.placement ? `${i.placement.provider} · ${i.placement.region}` : "—"}</td>
          <td class="num">${money(i.placement?.hourly_cost)}</td>
          <td>${when(i.update_time)}</td></tr>`)}</tbody></table>`}`;
}

function Explanation({ plan }) {
  if (!plan) return null;
  return html`<h2>Why here</h2>
    <p class="muted">${`${plan.offers_considered || 0} offers considered for ${bare(plan.objective, "OBJECTIVE_").toLowerCase().replace("_", " ")}.`}</p>
    ${(plan.candidates || []).length > 0 && html`<table class="candidates"><thead><tr>
        <th class="num">Rank</th><th>Offer</th><th class="num">Score</th><th>Criteria</th>
      </tr></thead><tbody>${plan.candidates.map((c) => html`<tr>
        <td class="num">${c.rank}</td>
        <td>${`${c.offer?.provider} · ${c.offer?.region} · ${c.offer?.gpu?.model} `}<span class="muted">(${money(c.placement?.hourly_cost)}/h)</span></td>
        <td class="num">${(c.score || 0).toFixed(3)}</td>
        <td>${(c.criteria || []).map((k) => `${k.criterion} ${(k.score || 0).toFixed(2)}×${k.weight}`).join(", ")}</td>
      </tr>`)}</tbody></table>`}
    ${(plan.rejections || []).length > 0 && html`<h2>Offers ruled out</h2><ul class="rejections">
      ${plan.rejections.map((r) => html`<li>${r.count || 0} · ${r.message || r.reason}</li>`)}</ul>`}
    ${(plan.alternatives || []).length > 0 && html`<h2>Nearest alternatives</h2><ul>
      ${plan.alternatives.map((a) => html`<li>${a.description}</li>`)}</ul>`}`;
}

// The newer of two views of an intent: the GET, the watch and the cancel answer
// can arrive in any order, and an older one must not hide a newer state.
const newer = (seen, next) => (seen && Number(seen.revision) > Number(next.revision) ? seen : next);

function IntentDetail({ name }) {
  const [intent, setShown] = useState(null);
  const setIntent = (next) => setShown((seen) => newer(seen, next));
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    setShown(null);
    api("GET", `/api/v1/${name}`).then((data) => setIntent(data.intent)).catch(setError);
  }, [name]);
  useFollow(`/api/v1/${name}:watch`, (event) => { setIntent(event.intent); setError(null); }, setError);
  const cancel = async () => {
    setBusy(true);
    try { setIntent((await api("POST", `/api/v1/${name}:cancel`, {})).intent); } catch (e) { setError(e); }
    setBusy(false);
  };
  if (intent === null) return html`<${ErrorBox} error=${error} /><p class="muted">Loading…</p>`;
  const p = intent.placement;
  return html`<h1>${shortName(intent.name)} <${State} intent=${intent} /></h1>
    <${ErrorBox} error=${error} />
    <section class="card"><dl class="facts">
      <dt>Name</dt><dd><code>${intent.name}</code></dd>
      <dt>State</dt><dd id="state-message">${intent.state_message || "—"}</dd>
      <dt>Workload</dt><dd>${`${intent.workload?.name} (${bare(intent.workload?.type, "WORKLOAD_TYPE_").toLowerCase()}) `}<code>${intent.workload?.image}</code></dd>
      <dt>GPUs</dt><dd>${intent.workload?.resources?.gpu?.count || 0}× ${intent.workload?.resources?.gpu?.model || "any"}</dd>
      <dt>Placement</dt><dd id="placement">${p ? `${p.provider} · ${p.cluster} · ${p.region} · ${p.gpu_model} on ${(p.nodes || []).map((n) => `${n.node} (${n.gpu_count})`).join(", ")} · ${money(p.hourly_cost)}/h` : "not placed"}</dd>
      <dt>Cost so far</dt><dd>${money(intent.usage?.cost_so_far)}</dd>
      <dt>GPU access</dt><dd id="gpu-access">${gpuAccess(intent.gpu_access)}</dd>
      <dt>Endpoint</dt><dd>${intent.endpoint || "—"}</dd>
    </dl>
    <div class="actions" style=${{ marginTop: "1rem" }}>
      <button class="danger" id="cancel" disabled=${busy || TERMINAL.has(stateOf(intent)) || stateOf(intent) === "CANCELLING"}
        onClick=${cancel}>Cancel intent</button></div></section>
    <${Explanation} plan=${intent.last_plan} />
    <h2>History</h2>
    <table id="history"><thead><tr><th>Time</th><th>From</th><th>To</th><th>Reason</th><th>Message</th></tr></thead>
      <tbody>${(intent.history || []).map((h) => html`<tr>
        <td>${when(h.time)}</td><td>${bare(h.from_state, "STATE_")}</td><td>${bare(h.to_state, "STATE_")}</td>
        <td>${h.reason}</td><td>${h.message}</td></tr>`)}</tbody></table>`;
}

function NewIntent() {
  const [text, setText] = useState(SAMPLE);
  const [error, setError] = useState(null);
  const [plan, setPlan] = useState(null);
  const send = async (path) => {
    const type = text.trim().startsWith("{") ? "application/json" : "application/yaml";
    setError(null);
    return api("POST", path, text, type);
  };
  const create = async (event) => {
    event.preventDefault();
    try {
      const created = await send("/api/v1/intents");
      location.hash = `#/intents/${created.intent.name}`;
    } catch (e) { setError(e); }
  };
  const dryRun = async () => {
    try { setPlan((await send("/api/v1/intents:plan")).plan); } catch (e) { setError(e); setPlan(null); }
  };
  return html`<h1>New intent</h1>
    <${ErrorBox} error=${error} />
    <form onSubmit=${create}>
      <textarea id="intent-text" spellcheck="false" value=${text}
        onInput=${(e) => setText(e.target.value)}></textarea>
      <div class="actions" style=${{ marginTop: ".75rem" }}>
        <button type="button" id="plan" onClick=${dryRun}>Plan (dry run)</button>
        <button type="submit" class="primary" id="create">Create</button>
      </div>
    </form>
    <${Explanation} plan=${plan} />`;
}

function Offers() {
  const [offers, setOffers] = useState(null);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState(null);
  const search = async (form) => {
    const query = new URLSearchParams({ page_size: "100" });
    for (const [key, value] of new FormData(form)) if (value) query.append(key, value);
    try {
      const data = await api("GET", `/api/v1/offers?${query}`);
      setOffers(data.offers || []); setTotal(data.total_offers || 0); setError(null);
    } catch (e) { setError(e); }
  };
  useEffect(() => { search(document.getElementById("offer-filters")); }, []);
  return html`<h1>Offers</h1>
    <form class="filters" id="offer-filters" onSubmit=${(e) => { e.preventDefault(); search(e.target); }}>
      <label>GPU model<input name="gpu.model" placeholder="nvidia-h100" /></label>
      <label>Vendor<input name="gpu.vendor" placeholder="nvidia" /></label>
      <label>Location<input name="constraints.location" placeholder="EU, DE, eu-west-3" /></label>
      <label>Objective<select name="objective">
        <option value="">—</option>
        <option value="OBJECTIVE_COST_MINIMIZATION">cheapest</option>
        <option value="OBJECTIVE_PERFORMANCE_MAXIMIZATION">fastest</option>
        <option value="OBJECTIVE_LATENCY_MINIMIZATION">lowest latency</option>
        <option value="OBJECTIVE_ENERGY_EFFICIENCY">greenest</option>
      </select></label>
      <label>Free GPUs only<select name="available_only"><option value="">no</option><option value="true">yes</option></select></label>
      <button type="submit" class="primary">Filter</button>
    </form>
    <${ErrorBox} error=${error} />
    ${offers !== null && html`<p class="muted" id="offer-count">${offers.length} shown of ${total}</p>
      <table id="offers"><thead><tr><th>Provider</th><th>Node</th><th>Where</th><th>GPU</th>
        <th class="num">Free / total</th><th class="num">Per GPU-hour</th><th class="num">Availability</th>
        <th class="num">Latency</th><th>Healthy</th></tr></thead>
      <tbody>${offers.map((o) => html`<tr>
        <td>${o.provider}</td><td>${o.node || "—"}</td><td>${o.region} (${o.country})</td>
        <td>${o.gpu?.model} <span class="muted">${o.gpu?.memory}</span></td>
        <td class="num">${o.gpus_free || 0} / ${o.gpus_total || 0}</td>
        <td class="num">${money(o.price_per_gpu_hour)}</td>
        <td class="num">${o.availability ? `${o.availability}%` : "—"}</td>
        <td class="num">${o.latency_ms || 0} ms</td><td>${o.healthy ? "yes" : "no"}</td></tr>`)}</tbody></table>`}`;
}

function Gpus() {
  const [gpus, setGpus] = useState(new Map());
  const [updated, setUpdated] = useState(null);
  const [error, setError] = useState(null);
  useFollow("/api/v1/utilization", (event) => {
    setGpus((previous) => {
      const next = event.type === "WATCH_EVENT_TYPE_UPDATE" ? new Map(previous) : new Map();
      for (const gpu of event.gpus || []) next.set(gpu.device?.uuid || `${gpu.node}/${gpu.device?.index}`, gpu);
      return next;
    });
    setUpdated(new Date());
    setError(null);
  }, setError);
  const rows = [...gpus.values()].sort((a, b) =>
    `${a.provider}/${a.node}/${String(a.device?.index || 0).padStart(3, "0")}`.localeCompare(
      `${b.provider}/${b.node}/${String(b.device?.index || 0).padStart(3, "0")}`));
  return html`<h1>GPUs <span class="live" id="live">${updated ? `live · ${updated.toLocaleTimeString()}` : "connecting…"}</span></h1>
    <${ErrorBox} error=${error} />
    <table id="gpus"><thead><tr><th>Provider</th><th>Node</th><th class="num">#</th><th>Model</th>
      <th>Utilisation</th><th class="num">Memory used</th><th class="num">Temperature</th>
      <th class="num">Power</th><th>Intent</th></tr></thead>
    <tbody>${rows.map((g) => html`<tr class=${g.stale ? "stale" : ""} data-uuid=${g.device?.uuid}>
      <td>${g.provider}</td><td>${g.node}</td><td class="num">${g.device?.index || 0}</td>
      <td>${g.device?.model}</td><td><${Bar} percent=${g.latest?.gpu_utilization_percent} /></td>
      <td class="num">${gib(g.latest?.memory_used_bytes)}</td>
      <td class="num">${g.latest?.temperature_celsius ?? "—"} °C</td>
      <td class="num">${g.latest?.power_watts === undefined ? "—" : `${g.latest.power_watts.toFixed(0)} W`}</td>
      <td>${g.intent ? html`<a href="#/intents/${g.intent}">${shortName(g.intent)}</a>` : "—"}</td>
    </tr>`)}</tbody></table>
    ${rows.length === 0 && updated && html`<p class="muted">No GPUs report to this control plane yet.</p>`}`;
}

function Tokens() {
  const [tokens, setTokens] = useState(null);
  const [error, setError] = useState(null);
  const load = () => api("GET", "/api/v1/auth/tokens?page_size=200")
    .then((data) => setTokens(data.tokens || [])).catch(setError);
  useEffect(() => { load(); }, []);
  const revoke = async (name) => {
    if (!confirm(`Revoke ${name}? Clients using it are refused from now on.`)) return;
    try { await api("POST", `/api/v1/${name}:revoke`, {}); load(); } catch (e) { setError(e); }
  };
  return html`<h1>Tokens</h1>
    <p class="muted">Secrets are shown once, when a token is made (<code>flarectl token create</code>);
      the API never returns them again, and neither does this page.</p>
    <${ErrorBox} error=${error} />
    ${tokens !== null && html`<table id="tokens"><thead><tr><th>Token</th><th>Label</th><th>Scopes</th>
      <th>Created</th><th>Expires</th><th>By</th><th></th></tr></thead>
      <tbody>${tokens.map((t) => html`<tr data-name=${t.name}>
        <td><code>${t.name}</code></td><td>${t.display_name || "—"}</td><td>${(t.scopes || []).join(", ")}</td>
        <td>${when(t.create_time)}</td><td>${t.expire_time ? when(t.expire_time) : "never"}</td>
        <td>${t.creator || "—"}</td>
        <td><button class="danger" onClick=${() => revoke(t.name)}>Revoke</button></td></tr>`)}</tbody></table>`}`;
}

// ---- the shell ------------------------------------------------------------

const VIEWS = [
  ["intents", "Intents"], ["new", "New intent"], ["offers", "Offers"], ["gpus", "GPUs"], ["tokens", "Tokens"],
];

function route(hash) {
  const path = hash.replace(/^#\/?/, "");
  if (path.startsWith("intents/")) return { view: "intent", name: path.slice("intents/".length) };
  return { view: VIEWS.some(([key]) => key === path) ? path : "intents" };
}

function App() {
  const [signedIn, setSignedIn] = useState(Boolean(sessionStorage.getItem(TOKEN_KEY)));
  const [where, setWhere] = useState(route(location.hash));
  useEffect(() => {
    const onHash = () => setWhere(route(location.hash));
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  if (!signedIn) return html`<${SignIn} onSignedIn=${() => setSignedIn(true)} />`;
  const signOut = () => { sessionStorage.removeItem(TOKEN_KEY); setSignedIn(false); };
  const tab = where.view === "intent" ? "intents" : where.view;
  return html`<header><span class="brand">FLARE</span><nav>
      ${VIEWS.map(([key, label]) => html`<a href="#/${key}" class=${tab === key ? "active" : ""} id="nav-${key}">${label}</a>`)}
    </nav><button onClick=${signOut} id="sign-out">Sign out</button></header>
    <main>${{
      intents: html`<${Intents} />`,
      intent: html`<${IntentDetail} name=${where.name} />`,
      new: html`<${NewIntent} />`,
      offers: html`<${Offers} />`,
      gpus: html`<${Gpus} />`,
      tokens: html`<${Tokens} />`,
    }[where.view]}</main>`;
}

render(html`<${App} />`, document.getElementById("app"));
